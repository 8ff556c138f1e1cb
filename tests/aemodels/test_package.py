"""aemodels is a leaf: it imports only torch, numpy, scipy and the stdlib, and does nothing at import."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json, sys, torch
threads = torch.get_num_threads()
import aemodels
from aemodels import (DETECTOR_KINDS, VAE, AutoencoderDetector, BaseDetector, Conv1dAutoencoder, Conv1dDetector,
                      DetectorInputError, MLPAutoencoder, NotFittedError, ThresholdFitError, TrainConfig,
                      UnknownParameterError, VAEDetector, make_detector, percentile_threshold, persistence,
                      point_scores, pot_threshold)
ours = sorted({m.split('.')[0] for m in sys.modules} & {'features', 'monitoring', 'flows', 'pandas', 'pyarrow',
                                                        'duckdb', 'mlflow', 'prefect', 'sklearn'})
print(json.dumps({"file": aemodels.__file__, "forbidden": ours, "threads_changed": torch.get_num_threads() != threads}))
"""


def test_package_is_a_leaf_with_its_public_names():
    # A fresh interpreter, run from the repository root, so nothing already imported by the
    # test session hides a stray import.
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, check=True)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert Path(report["file"]).resolve() == ROOT / "aemodels" / "__init__.py"
    assert report["forbidden"] == []
    assert report["threads_changed"] is False
