"""Keyboard control of the live preview, as a pure function: ``handle_key(state, key) -> state``.

The state says what the session should look like; the live loop compares the old
and new state and does the side effects (load a style, start a recording, save a
snapshot, go full screen). That keeps every key testable without a window.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

STRENGTH_STEP = 0.1

HELP = [
    "n / p   next / previous style",
    "1-9     pick a style",
    "[ / ]   less / more style strength",
    "c       keep the input's colours",
    "t       temporal smoothing",
    "b       side by side with the input",
    "s       snapshot (PNG)",
    "r       start / stop recording (MP4)",
    "f       full screen",
    "h       show / hide these keys",
    "q, Esc  quit",
]


@dataclass(frozen=True)
class LiveState:
    style: int = 0          # index into the session's style list
    n_styles: int = 1
    strength: float = 1.0
    preserve_color: bool = False
    temporal: bool = False
    side_by_side: bool = False
    recording: bool = False
    fullscreen: bool = False
    show_help: bool = False
    snapshots: int = 0      # snapshots asked for so far; the loop saves one each time it grows
    quit: bool = False


def handle_key(state: LiveState, key: int) -> LiveState:
    """The state after pressing ``key`` (an OpenCV ``waitKey`` code; -1 = no key)."""
    if key is None or key < 0:
        return state
    k = key & 0xFF
    ch = chr(k).lower() if 32 <= k < 127 else ""
    if k == 27 or ch == "q":
        return replace(state, quit=True)
    if ch == "n":
        return replace(state, style=(state.style + 1) % state.n_styles)
    if ch == "p":
        return replace(state, style=(state.style - 1) % state.n_styles)
    if ch and ch in "123456789":
        i = int(ch) - 1
        return replace(state, style=i) if i < state.n_styles else state
    if ch in ("[", "]"):
        step = STRENGTH_STEP if ch == "]" else -STRENGTH_STEP
        return replace(state, strength=round(min(1.0, max(0.0, state.strength + step)), 2))
    toggles = {"c": "preserve_color", "t": "temporal", "b": "side_by_side", "r": "recording",
               "f": "fullscreen", "h": "show_help"}
    if ch in toggles:
        name = toggles[ch]
        return replace(state, **{name: not getattr(state, name)})
    if ch == "s":
        return replace(state, snapshots=state.snapshots + 1)
    return state
