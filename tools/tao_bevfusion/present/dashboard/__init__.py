"""The dashboard MCP App: one self-contained HTML page (page.html) and the view data it draws.

The page is served as the `ui://` resource PAGE_URI; get_job and list_jobs name it in their tool `_meta`.
Hosts with MCP Apps render it in the conversation and hand it each result; everyone else keeps the text.
"""

import functools
from importlib import resources

PAGE_URI = "ui://tao-bevfusion/dashboard.html"
VIEW_KEY = (
    "tao-bevfusion/dashboard"  # the result `_meta` key holding the view data (Apps clients only)
)


@functools.lru_cache(maxsize=1)
def page_html() -> str:
    """The page: scripts and styles inline, no network fetch (pictures come through resources/read)."""
    return resources.files(__package__).joinpath("page.html").read_text(encoding="utf-8")
