"""Results depend only on the request, its seed and the chip identity: the same in every process."""

import hashlib
import subprocess
import sys
import textwrap

import numpy as np

import delgrad_core as dg

SCRIPT = textwrap.dedent("""
    import hashlib, sys
    import numpy as np
    import delgrad_core as dg

    chip, seed = int(sys.argv[1]), int(sys.argv[2])
    backend = dg.get_backend("bss2-emulator", chip=chip, cache=False)
    calibration = backend.calibrate()
    network = dg.Network.feedforward([20, 30, 3], delay_kind="axonal", neuron=dg.NeuronParameters(2.6, 1.0, 1.0),
                                     weight_mean=0.8, weight_std=0.5, delay_value=2.5, seed=1)
    inputs = np.repeat(np.random.default_rng(2).uniform(0.15, 2.0, (50, 4)), 5, axis=1)
    result = backend.execute(backend.represent(network), inputs, calibration=calibration, seed=seed)
    arrays = result.layer_spike_times + result.arrival_times
    print(calibration.digest, hashlib.sha256(b"".join(a.tobytes() for a in arrays)).hexdigest())
""")


def _in_subprocess(chip: int, seed: int, cwd) -> list[str]:
    """Run SCRIPT in a fresh interpreter, outside the source tree (which holds no compiled kernels)."""
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(chip), str(seed)], capture_output=True, text=True,
                         timeout=120, cwd=cwd)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_the_same_request_gives_the_same_result_in_every_process(tmp_path):
    backend = dg.get_backend("bss2-emulator", chip=3, cache=False)
    calibration = backend.calibrate()
    network = dg.Network.feedforward([20, 30, 3], delay_kind="axonal", neuron=dg.NeuronParameters(2.6, 1.0, 1.0),
                                     weight_mean=0.8, weight_std=0.5, delay_value=2.5, seed=1)
    inputs = np.repeat(np.random.default_rng(2).uniform(0.15, 2.0, (50, 4)), 5, axis=1)
    result = backend.execute(backend.represent(network), inputs, calibration=calibration, seed=7)
    arrays = result.layer_spike_times + result.arrival_times  # (metadata holds the wall time)
    here = [calibration.digest, hashlib.sha256(b"".join(a.tobytes() for a in arrays)).hexdigest()]
    assert _in_subprocess(3, 7, tmp_path) == here
    other_seed, other_chip = _in_subprocess(3, 8, tmp_path), _in_subprocess(4, 7, tmp_path)
    assert other_seed[0] == here[0] and other_seed[1] != here[1]  # same chip, other noise
    assert other_chip[0] != here[0] and other_chip[1] != here[1]
