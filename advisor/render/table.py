"""Tables that keep what a user types whole. An ``id`` column never wraps; an ``ids`` column (a
list such as aliases or coefficient ids) wraps only between its items; ``text`` wraps anywhere.
When even that does not fit the terminal, optional columns are left out, last first, and a line
says which (``--format json`` always has them all)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

GAP = 2  # rich's padding between columns of a box-less table


@dataclass(frozen=True)
class Column:
    name: str
    kind: str = "text"  # id | ids | text
    justify: str = "left"
    optional: bool = False  # may be left out on a narrow terminal
    least: int = 6  # a text column is never narrower (its header's width, if wider)

    def min_width(self, cells: list[str]) -> int:
        if self.kind == "id":
            return max([len(self.name), *(len(c) for c in cells)])
        words = [w for cell in cells for w in (cell.split(", ") if self.kind == "ids" else cell.split())]
        longest = max([len(self.name), *(len(w) + (1 if self.kind == "ids" else 0) for w in words)])
        return longest if self.kind == "ids" else min(longest, max(len(self.name), self.least))


def print_table(console: Console, columns: list[Column], rows: list[list[str]]) -> None:
    from rich.table import Table

    shown = list(range(len(columns)))
    widths = [c.min_width([row[i] for row in rows]) for i, c in enumerate(columns)]
    natural = [max([len(c.name), *(len(row[i]) for row in rows)]) for i, c in enumerate(columns)]

    def needed(sizes: list[int]) -> int:
        return sum(sizes[i] for i in shown) + GAP * (len(shown) - 1)

    dropped: list[str] = []
    for i in reversed(range(len(columns))):
        if needed(widths) <= console.width:
            break
        if columns[i].optional:
            shown.remove(i)
            dropped.insert(0, columns[i].name)
    fixed: dict[int, int | None] = {i: None for i in shown}  # None: rich sizes it (everything fits)
    if needed(natural) > console.width:
        # As rich does, narrow the widest wrapping columns first, but never below a column's least
        # width: rich alone would shrink an ids column through its ids.
        sizes = list(natural)
        while needed(sizes) > console.width:
            room = [i for i in shown if sizes[i] > widths[i] and columns[i].kind != "id"]
            if not room:
                break
            widest = max(sizes[i] for i in room)
            for i in room:
                if sizes[i] == widest and needed(sizes) > console.width:
                    sizes[i] -= 1
        fixed = {i: sizes[i] for i in shown}
    table = Table(box=None, header_style="bold", pad_edge=False)
    for i in shown:
        c = columns[i]
        table.add_column(c.name, justify=c.justify, no_wrap=c.kind == "id", width=fixed[i],  # type: ignore[arg-type]
                         overflow="fold")
    for row in rows:
        table.add_row(*(row[i] for i in shown))
    console.print(table)
    if dropped:
        console.print(f"(columns left out at this width: {', '.join(dropped)}; --format json has them all)",
                      highlight=False, markup=False)
