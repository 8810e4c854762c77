"""Where a JSON text breaks, said in words a message can carry."""
from __future__ import annotations

import json


def where_it_breaks(error: json.JSONDecodeError) -> str:
    """'Unterminated string starting at line 88, column 5': the decoder's reason with its position.

    Some of the decoder's reasons end in "at" because they expect the position to follow
    ("Unterminated string starting at"); the position is joined on without a second "at".
    """
    reason = error.msg.removesuffix(" at")
    return f"{reason} at line {error.lineno}, column {error.colno}"
