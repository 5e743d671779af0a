"""Rendering A/B in one process: another version of pipeline/compose.py against this one.

    git show COMMIT:pipeline/compose.py > /tmp/compose_old.py
    python scripts/render_ab.py /tmp/compose_old.py [--data DIR]

Renders the same stage-B groups of the real ESC-50 clips at 48 kHz with both, interleaved (the
order alternates per round), timing CPU seconds per member; checks audio and gains are equal.
"""
import argparse
import importlib.util
import time
from pathlib import Path

import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("old")
ap.add_argument("--data", default=str(Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
                                      / "esc50-real"))
args = ap.parse_args()
spec = importlib.util.spec_from_file_location("compose_old", args.old)
OLD = importlib.util.module_from_spec(spec)
spec.loader.exec_module(OLD)

from teminal.pipeline import compose as NEW  # noqa: E402
from teminal.pipeline.audio import encode_member, load_source  # noqa: E402
from teminal.pipeline.sources.esc50 import scan  # noqa: E402

clips = scan(args.data, {"train": [1, 2, 3, 4, 5]}).clips
waves = {c.source_id: load_source(c.path, 48000) for c in clips}
cfg = NEW.ComposeConfig(sample_rate=48000)
groups = [NEW.make_group_recipes("b", "train", i, clips[i], clips[(i + 7) % len(clips)], cfg, 0)
          for i in range(len(clips))]
t = {"old": 0.0, "new": 0.0, "encode": 0.0}
same = True
for rnd in range(2):
    for recipes in groups:
        outs = {}
        order = (("old", OLD), ("new", NEW)) if rnd % 2 == 0 else (("new", NEW), ("old", OLD))
        for name, mod in order:
            c0 = time.process_time()
            cache = {}
            outs[name] = [mod.render_detailed(r, waves, cache) for r in recipes]
            t[name] += time.process_time() - c0
        c0 = time.process_time()
        for r in outs["new"]:
            encode_member(r.audio, 48000, "flac")
        t["encode"] += time.process_time() - c0
        for a, b in zip(outs["old"], outs["new"]):
            same &= bool(np.array_equal(a.audio, b.audio)) and a.gains_db == b.gains_db
n = 2 * sum(len(g) for g in groups)
print({k: round(1000 * v / n, 3) for k, v in t.items()}, "ms per member;", n, "members;",
      "identical" if same else "DIFFERENT")
