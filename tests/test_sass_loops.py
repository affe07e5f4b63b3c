"""tools/sass_loops.py reads loops out of disassembled SASS: its counting, on a hand-written listing.

The appendix quotes the counts this tool recorded (measured/sass_trajectories.json); the
disassembler itself is not in CI, so this checks the reading of its output: which loops are found,
which blocks are left out (a kept position's stores, a nested slow path) and how steps are counted.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

spec = importlib.util.spec_from_file_location("sass_loops", Path(__file__).resolve().parents[1] / "tools" / "sass_loops.py")
sass_loops = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sass_loops)

# Two steps per pass (each tests |x| and |y| against the bound in UR8), a block that stores a kept
# position behind a forward branch, a nested loop (a slow path), then the backward branch.
LISTING = """
\t.text.probe_gd_f32:
        /*0000*/                   MOV R1, c[0x0][0x28] ;
.L_x_1:
        /*0010*/                   FFMA R4, R2, R3, R4 ;
        /*0020*/                   FSETP.GTU.FTZ.AND P0, PT, |R4|, UR8, PT ;
        /*0030*/                   FSETP.LE.FTZ.AND P0, PT, |R5|, UR8, !P0 ;
        /*0040*/               @P1 BRA `(.L_x_2) ;
        /*0050*/                   STG.E desc[UR4][R6.64], R4 ;
        /*0060*/                   STG.E desc[UR4][R6.64+0x4], R5 ;
.L_x_2:
        /*0070*/                   FSETP.GEU.AND P3, PT, |R9|, 1.175494350822287508e-38, PT ;
.L_x_3:
        /*0080*/                   IADD3 R10, R10, 0x1, RZ ;
        /*0090*/               @P4 BRA `(.L_x_3) ;
        /*00a0*/                   FFMA R4, R2, R3, R4 ;
        /*00b0*/                   FSETP.GTU.FTZ.AND P0, PT, |R4|, UR8, PT ;
        /*00c0*/                   FSETP.LE.FTZ.AND P0, PT, |R5|, UR8, !P0 ;
        /*00d0*/               @P2 BRA `(.L_x_1) ;
        /*00e0*/                   EXIT ;
"""


def test_the_loops_and_what_a_step_costs_are_read_from_the_listing():
    code = sass_loops.functions(LISTING)["probe_gd_f32"]
    spans = sass_loops.loops(code)
    assert len(spans) == 2  # the step loop and the nested one
    outer = max(spans, key=lambda s: s[1] - s[0])
    n, steps = sass_loops.per_step(code, outer, spans)
    # 13 instructions from .L_x_1 to the branch back, less 2 stores and the 2 of the nested loop: 9;
    # the compare with a constant is the library's, not a step's
    assert (n, steps) == (9, 2)
    assert sass_loops.main_loop(code) == pytest.approx(4.5)
