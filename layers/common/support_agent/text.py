"""Text limits shared by the rooms: what the model sees of a long customer text."""

from __future__ import annotations

# What the model sees of a ticket's text at most; the ticket itself keeps every character.
MODEL_TEXT_LIMIT = 20_000


def shorten_for_model(text: str, limit: int = MODEL_TEXT_LIMIT) -> str:
    """`text` if it fits; else its beginning and end around a note saying how much was left out."""
    if len(text) <= limit:
        return text
    note = "\n\n[… {} characters left out; the full text is on the ticket …]\n\n"
    room = limit - len(note.format(len(text)))
    head = room * 3 // 4
    tail = room - head
    return text[:head] + note.format(len(text) - head - tail) + text[len(text) - tail :]
