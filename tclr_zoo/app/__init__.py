"""``tclr-zoo app``: a local web page over a saved ``VideoIndex`` -- search by upload or by an indexed
item, play the matching window, classify, and see what model and index answer.

The logic lives in plain modules that tests call without a browser or a server: :mod:`.service`
(search, window URLs, the serving rule, classification), :mod:`.about` (the about panel) and
:mod:`.strips` (frame strips as PNG). :mod:`.server` is the HTTP layer (FastAPI: routes, JSON
errors), with :mod:`.uploads` (an upload read whole, bounded by size and per-read time) and
:mod:`.work_queue` (work slots, the waiting line, ``Retry-After``, the model's thread); ``page.html``
is the one page, plain JavaScript with no build step. Only :mod:`.server` and :mod:`.uploads` need
the ``app`` extra (``pip install tclr-zoo[app]``).
"""


__all__: list[str] = []
