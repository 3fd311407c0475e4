"""What stands beside the road: curbs, guard rails and concrete barriers, as parts the renderer draws."""

from __future__ import annotations

from dataclasses import dataclass

from vbp_live.synth.scene import road_edges
from vbp_live.synth.world import WorldParams

_CURB, _RAIL, _CONCRETE = (160, 163, 165), (150, 152, 158), (172, 175, 178)


@dataclass(frozen=True)
class RoadsidePart:
    """A curb (flat strip ``width`` m wide) or an upright band from ``h0`` to ``h1`` m, at offset ``d``.

    With ``post_m`` > 0 the upright part is a row of 0.15 m wide posts every ``post_m`` metres.
    """

    d: float
    color: tuple[int, int, int]
    upright: bool
    width: float = 0.0
    h0: float = 0.0
    h1: float = 0.0
    post_m: float = 0.0


def roadside_parts(world: WorldParams, lane_width: float) -> list[RoadsidePart]:
    """What stands beside the road on each side (guard rails and barriers on the right stand behind parked cars)."""
    d_left, d_right = road_edges(lane_width, world.lanes)
    parts = []
    for kind, edge, out in ((world.roadside_left, d_left, 1.0), (world.roadside_right, d_right, -1.0)):
        d = edge + out * (1.2 if out > 0 else 3.0)
        if kind == "curb":
            parts.append(RoadsidePart(edge + out * 0.72, _CURB, False, width=0.24))
        elif kind == "guard_rail":  # posts, the rail's shadowed lower lip, the rail
            parts += [RoadsidePart(d, (70, 72, 78), True, h0=0.0, h1=0.55, post_m=4.0),
                      RoadsidePart(d, (95, 96, 100), True, h0=0.5, h1=0.58),
                      RoadsidePart(d, _RAIL, True, h0=0.58, h1=0.8)]
        elif kind == "barrier":  # a jersey barrier: the darker sloped foot, then the face
            parts += [RoadsidePart(d, tuple(int(0.72 * c) for c in _CONCRETE), True, h0=0.0, h1=0.25),
                      RoadsidePart(d, _CONCRETE, True, h0=0.25, h1=0.82)]
    return parts
