"""``python -m lra.bench``: the efficiency benchmark, configured by ``conf/bench.yaml`` (Hydra).

``bench.level`` core, layer, model or loop: the sweep of ``lra.bench.run``. Two levels measure one question
each, with settings of their own under ``bench.<level>``: ``softmax_padding`` (``lra.bench.softmax_padding``:
SDPA with a mask against packed FlashAttention varlen), ``sdpa_kernels`` (``lra.bench.sdpa_kernels``: SDPA's
kernels at each LRA preset's attention shape) and ``taylorshift_kernels``
(``lra.bench.taylorshift_kernels``: the fused TaylorShift kernels checked, tuned and timed on a CUDA GPU).
"""

from __future__ import annotations

import importlib
import shlex

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from lra.bench import tracking
from lra.bench.run import config_from, run
from lra.bench.workloads import LEVELS

# each the module lra.bench.<level> with run(bench, command)
OWN_LEVELS = ("softmax_padding", "sdpa_kernels", "taylorshift_kernels")


def command_line() -> str:
    """The command that reproduces this run: the module and its overrides, shell-quoted."""
    overrides = HydraConfig.get().overrides.task
    return " ".join(["python -m lra.bench", *(shlex.quote(o) for o in overrides)])


@hydra.main(version_base=None, config_path="../../conf", config_name="bench")
def main(cfg: DictConfig) -> None:
    bench = OmegaConf.to_container(cfg.bench, resolve=True)
    try:
        if bench["level"] in OWN_LEVELS:
            paths = importlib.import_module(f"lra.bench.{bench['level']}").run(bench, command_line())
            print("\n".join(f"wrote {path}" for path in paths.values()))
            return
        if bench["level"] not in (*LEVELS, "loop"):
            raise ValueError(f"bench.level={bench['level']!r}; valid: {', '.join((*LEVELS, 'loop', *OWN_LEVELS))}")
        config = config_from(bench)
        tracking.check_available(config.wandb.enabled)
    except (ValueError, TypeError, RuntimeError) as error:  # bad settings: the message, not a traceback
        raise SystemExit(f"lra.bench: {error}") from None
    run(config, command_line())


if __name__ == "__main__":
    main()
