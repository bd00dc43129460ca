"""Series assembly benchmark: curate's DICOM series -> volume vs dcm2niix on the same files.

A 300-slice 512 x 512 axial CT (int16 stored, intercept -1024, shuffled file names) is written
to a temporary folder. Timed, best of N, wall clock, one process each:

- dcm2niix: `dcm2niix -z n` on the folder (reads, sorts, writes an uncompressed NIfTI);
- curate: read every file, parse the headers, `volume_from_series` (order, decode, modality
  LUT, RAS+ canonical), the `native` preset (values kept, int16 like dcm2niix's output) and
  the NIfTI written to disk with nibabel (the output dcm2niix writes); also without the
  write (the volume in memory, what a build stores).

The ratio is curate / dcm2niix (<= 1.5 is the target). The page cache is warmed by one
untimed run of each, so both read from memory. The voxels of both outputs are compared.

    .venv/bin/python benchmarks/bench_series_assembly.py [--slices 300] [--repeat 3]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _cpu() -> float:
    """CPU seconds of this process and its finished children (dcm2niix runs as a child)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def best_of(repeat: int, fn):
    """(best wall seconds, best CPU seconds, result): on a shared machine the CPU time is
    the steadier measure, so both are printed."""
    walls, cpus, result = [], [], None
    for _ in range(repeat):
        start, cpu = time.perf_counter(), _cpu()
        result = fn()
        walls.append(time.perf_counter() - start)
        cpus.append(_cpu() - cpu)
    return min(walls), min(cpus), result


def main() -> int:
    import nibabel as nib
    import numpy as np

    from curate.demo.volumes import ct_phantom, write_ct_series
    from curate.parse.volume import preprocess, preset, read_series_datasets, volume_from_series

    parser = argparse.ArgumentParser()
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    dcm2niix = shutil.which("dcm2niix")
    if dcm2niix is None:
        print("dcm2niix is not installed: no baseline", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory() as tmp:
        folder, out = Path(tmp, "series"), Path(tmp, "out")
        out.mkdir()
        write_ct_series(
            folder,
            ct_phantom((512, 512, args.slices), seed=0),
            spacing=(0.7, 0.7, 1.25),
            origin=(-179.0, -179.0, -300.0),
            series_uid="1.2.826.0.1.3680043.8.498.424242",
            study_uid="1.2.826.0.1.3680043.8.498.4242",
        )
        files = sorted(folder.glob("*.dcm"))

        def run_dcm2niix() -> Path:
            for old in out.glob("*"):
                old.unlink()
            subprocess.run(
                [dcm2niix, "-z", "n", "-f", "ref", "-o", str(out), str(folder)],
                check=True,
                capture_output=True,
            )
            return out / "ref.nii"

        def assemble() -> object:
            items, failed = read_series_datasets([(str(p), p.read_bytes()) for p in files])
            assert not failed
            volume = volume_from_series(items, uid_salt="benchmark-salt-not-secret")
            return preprocess(volume, preset("native"))

        def run_curate() -> object:
            prepared = assemble()
            nib.save(nib.Nifti1Image(prepared.array, prepared.affine), str(Path(tmp, "ours.nii")))
            return prepared

        run_dcm2niix()
        run_curate()  # warm the page cache and imports
        t_ref, c_ref, ref_path = best_of(args.repeat, run_dcm2niix)
        t_ours, c_ours, volume = best_of(args.repeat, run_curate)
        t_assembly, c_assembly, _ = best_of(args.repeat, assemble)
        reference = nib.as_closest_canonical(nib.load(str(ref_path)))
        same = bool(np.array_equal(volume.array, reference.get_fdata(dtype=np.float32)))
        print(f"stored dtype: {volume.array.dtype}")
        affine = float(np.abs(volume.affine - reference.affine).max())

    print(f"series: {args.slices} slices of 512x512 int16, {len(files)} files")
    print("                       wall s   CPU s")
    print(f"dcm2niix (baseline)   {t_ref:7.3f} {c_ref:7.3f}")
    print(f"curate series->NIfTI  {t_ours:7.3f} {c_ours:7.3f}")
    print(f"curate series->volume {t_assembly:7.3f} {c_assembly:7.3f} (in memory, RAS+, no file)")
    print(f"voxels equal: {same}; max affine difference {affine:.2e} mm")
    print(
        f"ratio curate series->NIfTI / dcm2niix:  wall {t_ours / t_ref:.2f}x, "
        f"CPU {c_ours / c_ref:.2f}x (target <= 1.5x)"
    )
    print(
        f"ratio curate series->volume / dcm2niix: wall {t_assembly / t_ref:.2f}x, "
        f"CPU {c_assembly / c_ref:.2f}x"
    )
    return 0 if same and affine < 1e-3 else 1


if __name__ == "__main__":
    raise SystemExit(main())
