"""Extract the config keys each trainer accepts, at a pinned release, into rules/registry/fields/.

`advisor recommend --format axolotl | llama-factory | trl` writes only keys in these lists, and
warns about a value the trainer has no key for. Axolotl and LLaMA-Factory pin transformers, peft and
trl versions that cannot be installed beside advisor's own, so their lists are read from the
release's wheel without importing it: the annotated fields of the config classes, walked through
their bases (Axolotl's pydantic AxolotlInputConfig and its nested `trl:` / `vllm:` models;
LLaMA-Factory's argument dataclasses plus the Hugging Face Seq2SeqTrainingArguments they extend).
TRL's lists come from the installed trl (its dataclasses), and tests/test_trainer_output.py checks
them against it, so a TRL upgrade that renames a field fails CI until this is re-run.

    python tools/trainer_fields.py axolotl path/to/axolotl-0.19.0-py3-none-any.whl
    python tools/trainer_fields.py llama-factory llamafactory-0.9.5-py3-none-any.whl transformers-5.6.0-py3-none-any.whl
    python tools/trainer_fields.py trl

(`pip download --no-deps axolotl==0.19.0 llamafactory==0.9.5 transformers==5.6.0 -d .` fetches the wheels.)
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import importlib
import json
import sys
import zipfile
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent.parent / "rules" / "registry" / "fields"


@dataclasses.dataclass
class ClassInfo:
    bases: list[str]
    fields: dict[str, str]  # name -> annotation source
    values: list[str]  # an Enum's string values


def _classes(sources: dict[str, str]) -> dict[str, ClassInfo]:
    out: dict[str, ClassInfo] = {}
    for text in sources.values():
        for node in ast.walk(ast.parse(text)):
            if not isinstance(node, ast.ClassDef):
                continue
            fields: dict[str, str] = {}
            values: list[str] = []
            for stmt in node.body:
                if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                    name = stmt.target.id
                    if not name.startswith("_") and name != "model_config":
                        fields[name] = ast.unparse(stmt.annotation)
                elif (isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Constant)
                      and isinstance(stmt.value.value, str)):
                    values.append(stmt.value.value)
            bases = [ast.unparse(b).split(".")[-1] for b in node.bases]
            out[node.name] = ClassInfo(bases, fields, values)
    return out


def _walk(classes: dict[str, ClassInfo], name: str) -> dict[str, str]:
    """Fields of ``name`` and its bases (those defined in the sources), base first."""
    info = classes[name]
    fields: dict[str, str] = {}
    for base in reversed(info.bases):
        if base in classes:
            fields.update(_walk(classes, base))
    fields.update(info.fields)
    return fields


def _literal(annotation: str) -> list[str]:
    """The choices of a Literal["a", "b"] annotation."""
    try:
        node = ast.parse(annotation, mode="eval").body
    except SyntaxError:
        return []
    for sub in ast.walk(node):
        if isinstance(sub, ast.Subscript) and ast.unparse(sub.value).endswith("Literal"):
            items = sub.slice.elts if isinstance(sub.slice, ast.Tuple) else [sub.slice]
            return [i.value for i in items if isinstance(i, ast.Constant) and isinstance(i.value, str)]
    return []


def _wheel_sources(wheel: Path, folder: str) -> dict[str, str]:
    with zipfile.ZipFile(wheel) as z:
        return {n: z.read(n).decode("utf-8") for n in z.namelist() if n.startswith(folder) and n.endswith(".py")}


def _version(wheel: Path) -> str:
    return wheel.name.split("-")[1]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _mappings(fields: dict[str, str]) -> set[str]:
    """Keys whose value is a free-form mapping (lr_scheduler_kwargs: dict[str, Any]): any sub-key goes."""
    return {k for k, annotation in fields.items() if "dict" in annotation.lower()}


def axolotl(wheel: Path) -> dict[str, Any]:
    classes = _classes(_wheel_sources(wheel, "axolotl/utils/schemas/"))
    top = _walk(classes, "AxolotlInputConfig")
    # A plugin (plugins: [axolotl.integrations.liger.LigerPlugin]) merges its args model into the
    # config's keys (axolotl/integrations/base.py get_input_args; axolotl/utils/config merge_input_args).
    plugins = _classes(_wheel_sources(wheel, "axolotl/integrations/"))
    for name in plugins:
        if name.endswith("Args") and not name.startswith("_"):
            top.update({k: v for k, v in _walk(plugins, name).items() if k not in top})
    keys = set(top)
    for name, annotation in top.items():
        nested = [c for c in classes if c.endswith("Config") and c in annotation.replace("|", " ").split()]
        for cls in nested:  # trl: TRLConfig, vllm: VllmConfig, ...: their keys as dotted paths
            keys.update(f"{name}.{sub}" for sub in _walk(classes, cls))
    choices = {"rl": classes["RLType"].values}
    return {"trainer": "axolotl", "name": "Axolotl", "version": _version(wheel),
            "source": f"PyPI {wheel.name} (sha256 {_sha256(wheel)}): axolotl/utils/schemas/*.py, "
                      "AxolotlInputConfig and its bases; nested models as dotted keys; rl: RLType",
            "choices": choices, "fields": sorted(keys), "mappings": sorted(_mappings(top))}


def llama_factory(wheel: Path, hf_wheel: Path) -> dict[str, Any]:
    """``hf_wheel``: the newest transformers the release admits (llamafactory 0.9.5: <=5.6.0), whose
    Seq2SeqTrainingArguments its TrainingArguments extends."""
    classes = _classes(_wheel_sources(wheel, "llamafactory/hparams/"))
    keys: dict[str, str] = {}
    for cls in ("ModelArguments", "DataArguments", "FinetuningArguments", "GeneratingArguments",
                "TrainingArguments"):
        keys.update(_walk(classes, cls))
    hf_classes = _classes({n: t for n, t in _wheel_sources(hf_wheel, "transformers/").items()
                           if n.endswith(("/training_args.py", "/training_args_seq2seq.py"))})
    hf_fields = _walk(hf_classes, "Seq2SeqTrainingArguments")
    hf = set(hf_fields)
    choices = {k: _literal(v) for k, v in keys.items() if _literal(v)}
    return {"trainer": "llama-factory", "name": "LLaMA-Factory", "version": _version(wheel),
            "source": f"PyPI {wheel.name} (sha256 {_sha256(wheel)}): llamafactory/hparams/*.py, the Model / Data / "
                      f"Finetuning / Generating / TrainingArguments dataclasses, plus Seq2SeqTrainingArguments of "
                      f"PyPI {hf_wheel.name} (sha256 {_sha256(hf_wheel)})",
            "choices": {k: v for k, v in sorted(choices.items()) if k in ("stage", "finetuning_type", "pref_loss")},
            "fields": sorted({*keys, *hf}), "mappings": sorted(_mappings({**hf_fields, **keys}))}


def _help_choices(help_text: str) -> list[str]:
    """The values a TRL field's help lists ("Possible values are: `'sigmoid'`, `'hinge'`, ...")."""
    import re

    match = re.search(r"(?:Possible|Supported) values are:?(.*?)(?:\.\s|$)", help_text, re.S)
    return re.findall(r"'([a-z][a-z0-9_]*)'", match.group(1)) if match else []


# the `trl` CLI's training commands (trl 1.16 trl/cli/commands/training.py runs trl/scripts/<command>.py)
TRL_COMMANDS = ("sft", "dpo", "grpo", "kto", "reward", "rloo", "distillation")


def _launch_options() -> list[str]:
    """The keys `trl <command> --config` takes beside its classes' fields: the file's keys none of them has are
    handed to `accelerate launch` as options (trl 1.16 trl/cli/commands/training.py), `accelerate_config` is the
    CLI's own, and TrlParser sets `env` as environment variables (trl/scripts/utils.py)."""
    from accelerate.commands.launch import launch_command_parser

    own = {"help", "training_script", "training_script_args"}
    dests = {a.dest for a in launch_command_parser()._actions if a.dest not in own}
    return sorted(dests | {"accelerate_config", "env"})


def trl_fields() -> dict[str, Any]:
    import accelerate
    import trl
    from trl.experimental.cpo import CPOConfig
    from trl.experimental.orpo import ORPOConfig

    from advisor.registries import methods

    # every config class trl exports (DatasetMixtureConfig is parsed beside the training ones), and the
    # preference ones it keeps in trl.experimental
    classes: dict[str, Any] = {n: getattr(trl, n) for n in trl.__all__ if n.endswith("Config")
                               and dataclasses.is_dataclass(getattr(trl, n))}
    classes |= {"ScriptArguments": trl.ScriptArguments, "CPOConfig": CPOConfig, "ORPOConfig": ORPOConfig}
    # the scripts' own argument classes (`trl grpo` / `trl rloo` parse reward_funcs from them)
    from trl.scripts.grpo import GRPOScriptArguments
    from trl.scripts.rloo import RLOOScriptArguments

    classes |= {"GRPOScriptArguments": GRPOScriptArguments, "RLOOScriptArguments": RLOOScriptArguments}
    # what each `trl <command> --config` parses the file into: its script's make_parser() classes, in order
    parsed = {cmd: list(importlib.import_module(f"trl.scripts.{cmd}").make_parser().dataclass_types)
              for cmd in TRL_COMMANDS}
    parses = {cmd: [t.__name__ for t in types] for cmd, types in parsed.items()}
    classes |= {t.__name__: t for types in parsed.values() for t in types}
    missing = [m.trl_config for m in methods().values() if m.trl_config and m.trl_config not in classes]
    return {"trainer": "trl", "name": "TRL", "version": trl.__version__, "absent": sorted(set(missing)),
            "source": f"trl {trl.__version__} (PyPI): the dataclass fields of " + ", ".join(sorted(classes))
            + f"; accelerate {accelerate.__version__}'s launch options",
            "parses": parses,
            "launch": _launch_options(),
            "classes": {name: sorted(f.name for f in dataclasses.fields(cls)) for name, cls in sorted(classes.items())},
            # the declared annotations: HfArgumentParser rewrites a parsed class's dict fields' types
            "mappings": sorted({name for cls in classes.values() for c in cls.__mro__
                                for name, annotation in vars(c).get("__annotations__", {}).items()
                                if "dict" in str(annotation).lower()}),
            "choices": {name: {"loss_type": values} for name, cls in sorted(classes.items())
                        for f in dataclasses.fields(cls) if f.name == "loss_type"
                        and (values := _help_choices(str(f.metadata.get("help", ""))))}}


def main(argv: list[str]) -> int:
    which = argv[0] if argv else ""
    if which == "axolotl" and len(argv) == 2:
        data = axolotl(Path(argv[1]))
    elif which == "llama-factory" and len(argv) == 3:
        data = llama_factory(Path(argv[1]), Path(argv[2]))
    elif which == "trl":
        data = trl_fields()
    else:
        print(__doc__, file=sys.stderr)
        return 2
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{data['trainer']}.json"
    path.write_text(json.dumps(data, indent=1) + "\n")
    count = len(data["fields"]) if "fields" in data else sum(map(len, data["classes"].values()))
    print(f"{path}: {count} keys, {data['trainer']} {data['version']}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    raise SystemExit(main(sys.argv[1:]))
