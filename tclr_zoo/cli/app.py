"""``tclr-zoo app``: serve the web page over a saved index (:mod:`tclr_zoo.app`). Needs the ``app``
extra (FastAPI, uvicorn, python-multipart), checked before anything is loaded."""

from __future__ import annotations

import math

import click

from .errors import exit_with_error, user_errors_exit_2
from .options import checked_device, need_faiss, pretrained_weights, random_init_option, top_k_option

APP_EXTRA_MODULES = ("fastapi", "uvicorn", "multipart")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def checked_upload_mb(ctx: click.Context, param: click.Parameter, value: float) -> float:
    """``--max-upload-mb``: a finite size of at least one byte (``inf``, ``nan`` and 1e-9 are usage errors)."""
    if not (math.isfinite(value) and value * 2**20 >= 1):
        raise click.BadParameter(f"{value!r} is not a size an upload can have; give MB > 0, e.g. 200 or 0.5")
    return value


def finite_seconds(ctx: click.Context, param: click.Parameter, value: float) -> float:
    """A number of seconds that is a number (click's FloatRange lets ``nan`` through)."""
    if not math.isfinite(value):
        raise click.BadParameter(f"{value!r} is not a number of seconds")
    return value


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
              help="Model that embeds uploads; it must be the model the index was built with (its folder may have "
                   "moved) [default: the one the index records].")
@random_init_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. The default serves this machine only; 0.0.0.0 serves every network "
                   "this machine is on (anyone there can search the index and play its videos).")
@click.option("--port", type=click.IntRange(0, 65535), default=7860, show_default=True,
              help="Port to listen on (0: any free port; the address is printed).")
@click.option("--max-upload-mb", type=click.FloatRange(min=0, min_open=True), default=200.0, show_default=True,
              callback=checked_upload_mb, help="Largest video an upload may be; bigger ones are refused (413).")
@click.option("--read-timeout", type=click.FloatRange(min=0, min_open=True, max=3600), default=20.0,
              show_default=True, metavar="SECONDS", callback=finite_seconds,
              help="An upload that sends nothing for this long is refused (408) and its connection closed. "
                   "Uploads are read whole before they wait for the model, so a slow client holds no work slot.")
@top_k_option(default=10, max_k=100, help="Neighbours per search (the page can ask for another number).")
@click.option("--queue", type=click.IntRange(1, 32), default=4, show_default=True,
              help="Uploads embedding or waiting for the model at once (the model runs one at a time).")
@click.option("--queue-waiters", type=click.IntRange(0, 256), default=8, show_default=True,
              help="Uploads that may wait for one of the --queue places when all are taken; more are refused "
                   "at once (503, with Retry-After: the seconds the uploads already in the app take to clear).")
@click.option("--queue-wait", type=click.FloatRange(min=0, max=3600), default=30.0, show_default=True,
              metavar="SECONDS", callback=finite_seconds,
              help="Longest wait for a --queue place; an upload still waiting then is refused (503, with Retry-After).")
@click.option("--approximate", is_flag=True,
              help="Search with the index's saved HNSW graph (faiss extra) instead of exactly.")
@click.option("--backend", type=click.Choice(["torch", "onnx"]), default="torch", show_default=True,
              help="Backend that embeds uploads.")
@click.option("--device", default=None, callback=checked_device,
              help="cpu, cuda, cuda:N [default: a GPU when present].")
@user_errors_exit_2
def app_cmd(index_dir: str, model: str | None, random_init: bool, host: str, port: int, max_upload_mb: float,
            read_timeout: float, top_k: int, queue: int, queue_waiters: int, queue_wait: float, approximate: bool,
            backend: str, device: str | None) -> None:
    """Open a web page to search the index at INDEX: upload a video (or pick an indexed one) and see its
    nearest videos -- or moments, for an index built with --windows -- with frame strips, scores and
    times; click one to play its window. Models with a classifier also classify uploads (top 5).

    Safe by default: listens on 127.0.0.1 only, refuses uploads over --max-upload-mb, decodes them
    with the hardened decoder, serves only the files the index lists (by row number, never by a path
    from the browser) and bounds the work waiting for the model (--queue, --queue-waiters,
    --queue-wait); a client that stalls mid-upload is dropped (--read-timeout).

    \b
    Example:
      tclr-zoo index build runs/demo/model videos/ --out videos-index --windows --skip-bad
      tclr-zoo app videos-index            # then open http://127.0.0.1:7860/
    """
    if random_init and model is None:
        raise click.UsageError("--random-init needs --model ARCH (the architecture the index was built with)")
    require_app_extra()
    if approximate:
        need_faiss()
    from ..app.server import create_app, listen_socket, uvicorn_server
    from ..app.service import AppError, SearchService
    from ..app.uploads import mb_text

    try:  # first, so that a taken port fails at once, not after the model has loaded
        sock = listen_socket(host, port)
    except OSError as err:
        exit_with_error(f"cannot listen on {host}:{port}: {err.strerror or err} (choose another --port or --host)")
    try:
        service = SearchService.open(index_dir, model=model, backend=backend, device=device,
                                     approximate=approximate, k=top_k, pretrained=pretrained_weights(random_init))
    except AppError as err:
        exit_with_error(err.message)
    app = create_app(service, max_upload_mb=max_upload_mb, read_timeout=read_timeout, queue=queue,
                     queue_waiters=queue_waiters, queue_wait=queue_wait)
    limits = (f"uploads up to {mb_text(max_upload_mb)} MB; {queue} embedding or waiting for the model, "
              f"{queue_waiters} more waiting up to {queue_wait:g} s")
    _announce(service, host, sock.getsockname()[1], index_dir, limits)
    try:
        uvicorn_server(app).run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn shuts down cleanly and may then re-raise Ctrl+C: a normal way to stop
        pass
    click.echo("tclr-zoo app: stopped")  # also when uvicorn handled the signal itself and returned


def _announce(service, host: str, port: int, index_dir: str, limits: str) -> None:
    """What is served and its limits, the address to open, and a warning when it is reachable from
    other machines."""
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"tclr-zoo app: {len(service.index)} rows of {index_dir} with {service.model.model_id}")
    click.echo(f"tclr-zoo app: {limits}")
    click.echo(f"tclr-zoo app: open http://{shown}:{port}/ (Ctrl+C stops)", nl=True)
    if host not in LOOPBACK:
        click.echo(f"tclr-zoo app: warning: listening on {host}, not only this machine: anyone who can reach it "
                   "can search the index and play its videos", err=True)


__all__ = ["app_cmd", "require_app_extra"]
