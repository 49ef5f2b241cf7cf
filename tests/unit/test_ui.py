"""What the user sees: text from outside is printed as it is, never read as markup."""

from __future__ import annotations

import io
from datetime import datetime

from rich.console import Console

from edl.ui import UI


def _ui() -> tuple[UI, io.StringIO]:
    err = io.StringIO()
    return UI(Console(file=io.StringIO()), Console(file=err, width=200)), err


def test_messages_with_brackets_are_printed_literally():
    ui, err = _ui()
    ui.error("bucket [bold]x[/bold] is missing")
    ui.info("key [red]")
    ui.stack_event("edl-local-metadata", datetime(2026, 1, 1), "Table", "AWS::DynamoDB::Table",
                   "CREATE_FAILED", "Property [BillingMode] is invalid")
    text = err.getvalue()
    assert "Error: bucket [bold]x[/bold] is missing" in text
    assert "key [red]" in text
    assert "CREATE_FAILED - Property [BillingMode] is invalid" in text
