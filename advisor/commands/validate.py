"""`advisor validate`: lint existing training configs against the rulebook."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

from advisor.commands import options as o
from advisor.commands.params import Argument, Option
from advisor.errors import AdvisorError

RESULT = "advisor.validate.ValidationRun"
EPILOG = ("Examples:\n\n"
          "  advisor validate train.yaml\n\n"
          "  advisor validate configs/*.yaml --gpu rtx-4090 --format sarif -o advisor.sarif\n\n"
          "  advisor validate axolotl.yml --select VLR,VLO --fail-on warning\n\n"
          "  advisor validate sft.yaml --fix sft.fixed.yaml\n\n"
          "  advisor validate recipes/zephyr/sft/config_full.yaml --launch-config accelerate/zero3.yaml --gpu h100\n\n"
          "Silence one finding with a comment on its line: `lora_r: 256  # advisor: ignore[VLO002]`.")


def validate(
    configs: Annotated[list[Path], Argument(
        help="Config files: advisor, Axolotl, LLaMA-Factory, TRL / HF (YAML or JSON), trainer_state.json.")],
    config_format: o.ConfigFormat = None,
    model: o.OptModel = None,
    method: o.OptMethod = None,
    variant: o.OptVariant = None,
    peft: o.OptPeft = None,
    gpu: o.Gpu = None,
    gpu_mem: o.GpuMem = None,
    gpus: o.Gpus = None,
    sharding: o.Sharding = None,
    offload: o.Offload = [],  # noqa: B006
    launch_config: o.LaunchConfig = None,
    cycles: Annotated[Optional[int], Option("--cycles", help="RAFT: cycles the config is used for.")] = None,
    fmt: Annotated[str, o.format_option(RESULT)] = "text",
    fail_on: Annotated[Optional[str], o.fail_on_option("error, or .advisor.yaml's fail-on")] = None,
    select: Annotated[list[str], Option(
        "--select", help="Only these codes or code prefixes (e.g. VLR,VTM003).")] = [],  # noqa: B006
    ignore: Annotated[list[str], Option("--ignore", help="Skip these codes or prefixes.")] = [],  # noqa: B006
    fix: Annotated[Optional[Path], Option(
        "--fix", help="Write a corrected config (same format) to this file.")] = None,
    rules: o.Rules = [],  # noqa: B006
    output: o.Output = None,
    no_detect: o.NoDetect = False,
) -> int:
    """Lint existing training configs against the rulebook: rule codes, severities and fixes."""
    from advisor.configs.readers import check_config_format
    from advisor.facts.hardware import resolve_gpu
    from advisor.render.emit import check_format, emit
    from advisor.validate import Overrides, validate_file, validate_paths, write_fixed

    check_format(fmt, RESULT)
    if fix is not None and len(configs) != 1:
        raise AdvisorError("--fix: give exactly one config to fix", hint=f"got {len(configs)}")
    check_config_format(config_format)
    book = o.book(rules)
    method, peft = (v.strip().lower() if v is not None else None for v in (method, peft))  # as recommend reads them
    launch = None
    if launch_config is not None:
        from advisor.configs.sharding import read_launch_config

        launch = read_launch_config(launch_config)
    over = Overrides(model=model, method=method, variant=variant, peft=peft, cycles=cycles, config_format=config_format,
                     gpus=gpus, sharding=o.sharding_flags(sharding, offload), launch=launch)
    hw = resolve_gpu(book, name=gpu, memory_gb=gpu_mem, count=gpus, detect=not no_detect)
    run = validate_paths(configs, book, hw, over, select=select, ignore=ignore, fail_on=fail_on,
                         project_dir=Path.cwd())
    emit(run, fmt, output)
    if fix is not None and run.reports[0].config is not None:
        count = write_fixed(book, run.reports[0], fix,
                            again=lambda path: validate_file(path, book, hw, over, run.selection))
        sys.stderr.write(f"advisor: wrote {fix} with {count} fix(es)\n")
    return run.exit_code()
