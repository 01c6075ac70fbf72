"""``python -m lcf.train export-lease``: a weights folder from a lease's output folder, on the CPU after the lease.

The folder gets the teacher the lease shipped (the better of raw and EMA on its validation set), the students
distilled from exactly that teacher (refused otherwise), and ``z_density.safetensors`` (the float density of z, which
the integer tables are computed from), so the next lease starts from it instead of learning it again. The manifest's
``info`` records the total steps and every lease so far (``leases``), for the model card.
"""

from __future__ import annotations

import os
from pathlib import Path

from lcf.errors import TrainError
from lcf.train.distill import teacher_digest
from lcf.train.export import export_model
from lcf.train.lease_files import (
    STUDENTS,
    SUMMARY,
    Z_DENSITY_FILE,
    _strict_json,
    load_students,
    save_z_density,
    start_point,
)
from lcf.weights import Weights


def export_lease(folder: str | os.PathLike, out: str | os.PathLike, dtype: str = "float16", notes: str = "") -> Weights:
    folder, out = Path(folder), Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise TrainError(f"--out {out} must be a new or empty folder")
    if not (folder / SUMMARY).is_file():
        raise TrainError(f"--lease {folder}: no {SUMMARY} (not a lease's output folder)")
    summary = _strict_json((folder / SUMMARY).read_text(), str(folder / SUMMARY))
    start = start_point(str(folder), None)
    model = start.model
    shipped = []
    if (folder / STUDENTS).is_file():
        students, description = load_students(folder / STUDENTS)
        if description.get("teacher_digest") != teacher_digest(model):
            raise TrainError(f"{folder / STUDENTS} was distilled from another teacher than the one {folder} ships")
        for name, (arch, g_s) in students.items():
            model.add_decoder(name, arch).load_state_dict(g_s.state_dict())
            shipped.append(name)
    model.eval()
    info = {
        "steps": start.steps,
        "leases": start.history,
        "notes": notes,
        "lease": {"folder": str(folder), "shipped": summary.get("shipped"), "students": shipped},
        "training_files": {"z_density": Z_DENSITY_FILE},
    }
    weights = export_model(model, out, info=info, dtype=dtype)
    save_z_density(out, model)
    print(
        f"exported the {summary.get('shipped')} teacher of {folder} ({start.steps} steps in all"
        f"{', students ' + ', '.join(shipped) if shipped else ', no students'}) to {out} ({dtype}): model id "
        f"{weights.model_id.hex()}"
    )
    return weights
