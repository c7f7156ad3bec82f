"""Charts drawn on the server as SVG: no chart library, no third-party script on admin pages."""

from __future__ import annotations

from dataclasses import dataclass, field

from .analytics import UsageSummary

WIDTH = 720
HEIGHT = 200
BOTTOM = 20  # room for the date labels


@dataclass(frozen=True, slots=True)
class Rect:
    x: float
    y: float
    width: float
    height: float
    css: str
    title: str


@dataclass(frozen=True, slots=True)
class Label:
    x: float
    y: float
    text: str


@dataclass
class Chart:
    title: str
    width: int
    height: int
    peak: int
    rects: list[Rect] = field(default_factory=list)
    labels: list[Label] = field(default_factory=list)
    legend: list[tuple[str, str]] = field(default_factory=list)  # css class, name

    @property
    def empty(self) -> bool:
        return self.peak == 0


def stacked_days(title: str, days: list, parts: list[tuple[str, str, str]]) -> Chart:
    """One column per day, its parts stacked: ``parts`` is (attribute, css class, name)."""
    peak = max((sum(getattr(day, attr) for attr, _, _ in parts) for day in days), default=0)
    chart = Chart(title, WIDTH, HEIGHT, peak, legend=[(css, name) for _, css, name in parts])
    if not days:
        return chart
    slot = WIDTH / len(days)
    plot = HEIGHT - BOTTOM
    for index, day in enumerate(days):
        bottom = plot
        for attr, css, name in parts:
            value = getattr(day, attr)
            if value and peak:
                height = plot * value / peak
                bottom -= height
                chart.rects.append(
                    Rect(index * slot + 1, bottom, slot - 2, height, css, f"{day.day:%d %b}: {value} {name}")
                )
        if (len(days) - 1 - index) % 7 == 0:  # every week, counted back from today
            chart.labels.append(Label(index * slot + slot / 2, HEIGHT - 5, f"{day.day:%d %b}"))
    return chart


def ranked(title: str, items: list[tuple[str, int]], css: str) -> Chart:
    """Horizontal bars, largest first, with the name and count beside each."""
    row = 26
    peak = max((value for _, value in items), default=0)
    chart = Chart(title, WIDTH, max(row * len(items), row), peak)
    for index, (name, value) in enumerate(items):
        length = (WIDTH - 260) * value / peak if peak else 0
        chart.rects.append(Rect(220, index * row + 4, max(length, 2), row - 8, css, f"{name}: {value}"))
        chart.labels.append(Label(0, index * row + row / 2 + 4, name[:34]))
        chart.labels.append(Label(226 + length, index * row + row / 2 + 4, str(value)))
    return chart


def dashboard_charts(summary: UsageSummary) -> list[Chart]:
    return [
        stacked_days(
            "Messages per day",
            summary.days,
            [("local", "bar-local", "to local models"), ("cloud", "bar-cloud", "to cloud models")],
        ),
        stacked_days("Active people per day", summary.days, [("users", "bar-users", "active")]),
        ranked("Most used models (messages)", summary.models, "bar-local"),
        ranked("Model downloads", summary.downloads, "bar-users"),
    ]
