"""``tclr-zoo app``: a local web page over a saved ``VideoIndex`` -- search by upload or by an indexed
item, play the matching window, classify, and see what model and index answer.

The logic lives in plain modules that tests call without a browser or a server: :mod:`.service`
(search, window URLs, the serving rule, classification), :mod:`.about` (the about panel) and
:mod:`.strips` (frame strips as PNG). :mod:`.server` is the HTTP layer (FastAPI: routes, upload
limit, bounded work queue, JSON errors) and ``page.html`` the one page, plain JavaScript with no
build step. Only :mod:`.server` needs the ``app`` extra (``pip install tclr-zoo[app]``).
"""
