"""losslab: the code behind the executable textbook *How Networks Learn*.

One module per idea (see the book's "How this book works" page):

- ``backend``: where things run (device, array module, seeding);
- ``book``: the setup cell, glued numbers, static versus live;
- ``claims``: what the prose says about the page's results, executed and checked;
- ``plots``: figures in the book's style;
- ``explore``: explorers (pure ``render`` + live widgets + static HTML);
- ``quiz`` and ``exercises``: self-check questions and checked exercises.

Chapters add their compute modules (``losses``, ``landscapes``, ``optim``...)
beside these.
"""

__version__ = "0.1.0"

from .backend import describe, device, seed_everything  # noqa: E402
from . import claims  # noqa: E402
from .book import glue, is_static, setup  # noqa: E402
from .claims import claim  # noqa: E402
from .exercises import check, show_solution  # noqa: E402
from .questions import quiz  # noqa: E402

__all__ = [
    "__version__",
    "check",
    "claim",
    "claims",
    "describe",
    "device",
    "glue",
    "is_static",
    "quiz",
    "seed_everything",
    "setup",
    "show_solution",
]
