"""A checkbox whose state reads in plain text: ``[x]`` ticked, ``[ ]`` not.

Textual's Checkbox draws ``▐X▌`` either way and tells the states apart by colour alone, which a terminal with few
colours (or a screen reader, or a text capture) loses.
"""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Checkbox


class TickBox(Checkbox):
    @property
    def _button(self) -> Content:
        if self.value:  # the theme's "on" colour (green) on top of the text
            return Content.assemble(("[x]", self.get_visual_style("toggle--button")))
        return Content("[ ]")  # the widget's own text colour: Checkbox's "off" colour is barely visible
