"""GPU check for a machine with a real NVIDIA GPU: NVML readings, GPU-aware slots and a GPU run.

    python3 scripts/gpu_check.py

Prints what NVML reports (through runners.hostinfo, as `vhtui runner ls` shows it), takes GPU
slots from the real GPU list, and runs a command through the local runner on the assigned GPU,
which must see exactly that GPU (CUDA_VISIBLE_DEVICES) and, where PyTorch is installed, use it.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runners import RunSpec, get_runner  # noqa: E402
from runners.hostinfo import host_info, visible_gpus  # noqa: E402
from runners.slots import try_acquire  # noqa: E402

info = host_info()
print("host_info:", json.dumps(info))
gpus = visible_gpus("auto")
print("visible_gpus(auto):", gpus)
assert gpus and info["gpus"], "NVML reports no GPU"
with tempfile.TemporaryDirectory() as tmp:
    root = Path(tmp)
    first = try_acquire(root / "slots", 2, gpus, 1)
    second = try_acquire(root / "slots", 2, gpus, len(gpus))
    print("first lease:", first and first.gpu_ids, "second lease (all GPUs, must wait):", second)
    assert first and first.gpu_ids == [gpus[0]] and second is None
    for name in ("repo", "inputs", "outputs", "config"):
        (root / name).mkdir()
    script = root / "config" / "job.sh"
    script.write_text('echo "CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES"\nnvidia-smi -L\n'
                      'python3 -c "import torch; x = torch.ones(1024, 1024, device=\'cuda\'); '
                      'print(\'torch sees\', torch.cuda.device_count(), torch.cuda.get_device_name(0), float((x @ x).sum()))" '
                      '|| echo "no torch"\n')
    runner = get_runner("local", envs_dir=root / "envs")
    handle = runner.start(RunSpec("gpu-check", script, root / "repo", root / "inputs", root / "outputs", root / "config",
                                  env={"PATH": str(Path(sys.executable).parent) + ":/usr/local/bin:/usr/bin:/bin"},
                                  gpu_ids=first.gpu_ids, options={"env_mode": "current"}))
    output = b"".join(chunk.data for chunk in runner.stream(handle))
    code = runner.wait(handle)
    print(output.decode(errors="replace"))
    print("exit code", code)
    assert code == 0 and f"CUDA_VISIBLE_DEVICES={gpus[0]}".encode() in output
    first.release()
print("GPU CHECK PASSED")
