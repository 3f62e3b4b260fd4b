"""The one list of config keys that do not change what a run computes, and the few more that the tables pool.

``IDENTITY_NEUTRAL``: keys that change where a run's files go, what is shown or when it stops. They are not part
of a run's identity (``lra.train.identity.identity_key``), so a run resumed with another value (a longer
``trainer.max_time`` cap) is still the same run.

``COMPARISON_NEUTRAL``: those, and the keys under which two runs are two runs of one setting: the tables
(``lra.tables.variants``) average runs that differ only in them. They stay in the identity: a seed is another
run; and the identity is a hash that checkpoints folders and records are found by, so moving a key that
configs already hold into ``IDENTITY_NEUTRAL`` would give every existing run another identity.
"""

from __future__ import annotations

from typing import Any

IDENTITY_NEUTRAL = ("ckpt_path", "run_id", "logger", "paths", "hydra", "trainer.devices", "trainer.num_nodes",
                    "trainer.strategy", "trainer.max_time", "trainer.log_every_n_steps", "task.num_workers",
                    "task.eval_batch_size", "test_after_fit", "progress_refresh_steps", "measure_warmup_steps",
                    "checkpoint_every_s",
                    # speed options that leave what is learned as it is (tests/model/test_packed.py,
                    # tests/attention/test_baselines.py for the softmax backend's SDPA kernel). An attention key
                    # is neutral for every backend: one that names what another backend computes must not be here
                    # (the Performer's attention.kernel picks its features)
                    "model.compile", "model.unpad", "attention.sdpa")

COMPARISON_NEUTRAL = (*IDENTITY_NEUTRAL,
                      "seed", "preset",  # repeats of a setting; the preset is how the cell is named
                      "trainer.accelerator", "task.source_dir", "checkpoint_every_n_steps",
                      "trainer.enable_model_summary",
                      "trainer.precision",  # it is ${precision}, which is compared
                      # evaluation on trimmed batches predicts what full-length batches do
                      # (tests/train/test_trimmed_eval.py)
                      "task.trim_eval",
                      # where the data comes from is the record's data-source label, which splits cells by itself
                      "task.source", "task.generate_large", "task.generate_workers", "task.generator_workers",
                      "task.prepare_workers")


def is_neutral(dotted: str, neutral: tuple[str, ...]) -> bool:
    """Whether a dotted key is one of ``neutral`` or below one (``logger.wandb.project`` below ``logger``)."""
    return any(dotted == key or dotted.startswith(f"{key}.") for key in neutral)


def without(config: dict[str, Any], neutral: tuple[str, ...]) -> dict[str, Any]:
    """A copy of a plain config without the ``neutral`` keys (and what is below them)."""
    kept = {}
    for key, value in config.items():
        if key in neutral:
            continue
        nested = tuple(k.split(".", 1)[1] for k in neutral if k.startswith(f"{key}."))
        kept[key] = without(value, nested) if nested and isinstance(value, dict) else value
    return kept
