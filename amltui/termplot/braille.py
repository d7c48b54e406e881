"""A canvas of Unicode braille dots (2×4 per character cell) for terminal line plots."""

from __future__ import annotations

from rich.text import Text

# Bit of the dot at (x % 2, y % 4) inside a braille character (U+2800 + bits).
_DOTS = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))


class BrailleCanvas:
    """``width`` × ``height`` character cells = (2·width) × (4·height) dots; y grows downwards."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = max(width, 1), max(height, 1)
        self.bits = [[0] * self.width for _ in range(self.height)]
        self.styles: list[list[str | None]] = [[None] * self.width for _ in range(self.height)]

    @property
    def dot_size(self) -> tuple[int, int]:
        return self.width * 2, self.height * 4

    def set(self, x: int, y: int, style: str | None = None) -> None:
        if 0 <= x < self.width * 2 and 0 <= y < self.height * 4:
            row, col = y // 4, x // 2
            self.bits[row][col] |= _DOTS[y % 4][x % 2]
            self.styles[row][col] = style

    def line(self, x0: int, y0: int, x1: int, y1: int, style: str | None = None) -> None:
        """Bresenham's line between two dots (both ends included)."""
        dx, dy = abs(x1 - x0), -abs(y1 - y0)
        sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
        err = dx + dy
        while True:
            self.set(x0, y0, style)
            if x0 == x1 and y0 == y1:
                return
            e2 = 2 * err
            if e2 >= dy:
                err += dy
                x0 += sx
            if e2 <= dx:
                err += dx
                y0 += sy

    def rows(self) -> list[Text]:
        lines = []
        for bits, styles in zip(self.bits, self.styles, strict=True):
            text = Text()
            for b, style in zip(bits, styles, strict=True):
                text.append(chr(0x2800 + b) if b else " ", style=style or "")
            lines.append(text)
        return lines
