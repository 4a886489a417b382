"""Running a script under the real `accelerate launch` with two CPU ranks."""

import os
import socket
import subprocess
import sys


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def accelerate_launch(script, *script_args, num_processes=2, launcher_args=("--multi_gpu",), check=True, timeout=600):
    """Runs ``accelerate launch --multi_gpu --num_processes N`` (or other launcher flags) on this CPU-only
    machine; with 2 processes and --multi_gpu these are two real gloo ranks.

    Returns:
        The completed process; with ``check``, raises with its output if it failed.
    """
    accelerate = os.path.join(os.path.dirname(sys.executable), "accelerate")
    command = [
        accelerate,
        "launch",
        *launcher_args,
        "--num_processes",
        str(num_processes),
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(free_port()),
        str(script),
        *map(str, script_args),
    ]
    env = dict(
        os.environ,
        OMP_NUM_THREADS="1",
        PYTHONPATH=os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")])),
    )
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    if check and result.returncode != 0:
        raise AssertionError(
            f"accelerate launch failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}"
        )
    return result
