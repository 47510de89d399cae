"""``tclr-zoo app``: serve the web page over a saved index (:mod:`tclr_zoo.app`). Needs the ``app``
extra (FastAPI, uvicorn, python-multipart), checked before anything is loaded."""

from __future__ import annotations

import click

from .errors import exit_with_error, user_errors_exit_2
from .options import checked_device

APP_EXTRA_MODULES = ("fastapi", "uvicorn", "multipart")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def require_app_extra() -> None:
    """Exit 2 with the install command when a package of the ``app`` extra is missing."""
    import importlib

    for name in APP_EXTRA_MODULES:
        try:
            importlib.import_module(name)
        except ImportError as err:
            exit_with_error(f"tclr-zoo app needs the app extra ({err}): pip install 'tclr-zoo[app]'")


@click.command("app")
@click.argument("index_dir", metavar="INDEX", type=click.Path(file_okay=False))
@click.option("--model", default=None,
              help="Model that embeds uploads; it must be the model the index was built with "
                   "[default: the one the index records].")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. The default serves this machine only; 0.0.0.0 serves every network "
                   "this machine is on (anyone there can search the index and play its videos).")
@click.option("--port", type=click.IntRange(0, 65535), default=7860, show_default=True,
              help="Port to listen on (0: any free port; the address is printed).")
@click.option("--max-upload-mb", type=click.FloatRange(min=0, min_open=True), default=200.0, show_default=True,
              help="Largest video an upload may be; bigger ones are refused (413).")
@click.option("-k", "k", type=click.IntRange(1, 100), default=10, show_default=True,
              help="Neighbours per search (the page can ask for another number).")
@click.option("--queue", type=click.IntRange(1, 32), default=4, show_default=True,
              help="Uploads being embedded or waiting at once; more are refused (503) until one finishes.")
@click.option("--approximate", is_flag=True,
              help="Search with the index's saved HNSW graph (faiss extra) instead of exactly.")
@click.option("--backend", type=click.Choice(["torch", "onnx"]), default="torch", show_default=True,
              help="Backend that embeds uploads.")
@click.option("--device", default=None, callback=checked_device,
              help="cpu, cuda, cuda:N [default: a GPU when present].")
@user_errors_exit_2
def app_cmd(index_dir: str, model: str | None, host: str, port: int, max_upload_mb: float, k: int, queue: int,
            approximate: bool, backend: str, device: str | None) -> None:
    """Open a web page to search the index at INDEX: upload a video (or pick an indexed one) and see its
    nearest videos -- or moments, for an index built with --windows -- with frame strips, scores and
    times; click one to play its window. Models with a classifier also classify uploads (top 5).

    Safe by default: listens on 127.0.0.1 only, refuses uploads over --max-upload-mb, decodes them
    with the hardened decoder, serves only the files the index lists (by row number, never by a path
    from the browser) and bounds the work waiting for the model (--queue).

    \b
    Example:
      tclr-zoo index build runs/demo/model videos/ --out videos-index --windows --skip-bad
      tclr-zoo app videos-index            # then open http://127.0.0.1:7860/
    """
    require_app_extra()
    from ..app.server import create_app, listen_socket, uvicorn_server
    from ..app.service import AppError, SearchService

    try:  # first, so that a taken port fails at once, not after the model has loaded
        sock = listen_socket(host, port)
    except OSError as err:
        exit_with_error(f"cannot listen on {host}:{port}: {err.strerror or err} (choose another --port or --host)")
    try:
        service = SearchService.open(index_dir, model=model, backend=backend, device=device,
                                     approximate=approximate, k=k)
    except AppError as err:
        exit_with_error(err.message)
    app = create_app(service, max_upload_bytes=int(max_upload_mb * 2**20), queue=queue)
    _announce(service, host, sock.getsockname()[1], index_dir)
    try:
        uvicorn_server(app).run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn shuts down cleanly and may then re-raise Ctrl+C: a normal way to stop
        pass
    click.echo("tclr-zoo app: stopped")  # also when uvicorn handled the signal itself and returned


def _announce(service, host: str, port: int, index_dir: str) -> None:
    """The address to open, and a warning when it is reachable from other machines."""
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"tclr-zoo app: {len(service.index)} rows of {index_dir} with {service.model.model_id}")
    click.echo(f"tclr-zoo app: open http://{shown}:{port}/ (Ctrl+C stops)", nl=True)
    if host not in LOOPBACK:
        click.echo(f"tclr-zoo app: warning: listening on {host}, not only this machine: anyone who can reach it "
                   "can search the index and play its videos", err=True)


__all__ = ["app_cmd", "require_app_extra"]
