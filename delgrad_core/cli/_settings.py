"""Command-line settings shared by `delgrad train`, `delgrad evaluate` and `delgrad sweep`: the
options every one takes (--config, --backend-option, --dataset-option, --set), how they are laid
over a config file, the refusal of a run whose plugins are not installed, and of an --out
longer than the file system allows."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import click

from delgrad_core._errors import FileFormatError, InvalidValueError
from delgrad_core._ir import DelayKind

__all__ = ["BACKEND_OPTION", "DATASET_OPTION", "DELAY_CHOICES", "PLUGIN_SETTINGS", "RegularFile", "SEEDS",
           "SET_OPTION", "absolute_paths", "check_not_a_run_file", "check_out_names", "command_line_settings",
           "given_once", "given_settings", "one_or_list", "plugin_named", "refuse_not_installed", "refuse_set_twice",
           "run_settings", "trained_on_a_representing_backend", "with_its_file", "with_tables",
           "without_replaced_options", "check_thread_variable", "refuse_no_default_backend", "shortened",
           "CONFIG_FILE"]

DELAY_CHOICES = [kind.value for kind in DelayKind]
SEEDS = click.IntRange(0, 2**63 - 1)  # (the seeds delgrad_core._execution.MAX_SEED allows)


def one_or_list(value, kind, name):
    """'30' -> 30, '128,64' -> [128, 64] (the config checks the values; only `kind` int can
    refuse one)."""
    if value is None:
        return None
    try:
        items = [kind(item.strip()) for item in value.split(",")]
    except ValueError:
        raise click.BadParameter(f"expected an integer or comma-separated integers (e.g. 30 or 128,64), got "
                                 f"{value!r}", param_hint=f"--{name}") from None
    return items[0] if len(items) == 1 else items


def given_once(parse, advice: str | None = None):
    """A callback of an option declared `multiple` only to notice repeats: a repeated --hidden,
    --delays or --config is refused (click keeps the last silently), then `parse` reads the one.
    `advice` says what to give instead (default: one comma-separated list)."""
    def callback(ctx, param, values):
        if len(values) > 1:
            name = param.opts[0]
            shown = ", ".join(repr(str(value)) for value in values)
            instead = advice or f"one {name} with a comma-separated list, e.g. {name} {','.join(map(str, values))}"
            raise click.BadParameter(f"given {len(values)} times ({shown}); give {instead}")
        return parse(ctx, param, values[0] if values else None)
    return callback



def _key_values(ctx, param, values) -> dict:
    from delgrad_core._options import parse_key_values

    try:
        return parse_key_values(values, param.opts[0])
    except InvalidValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _set_settings(ctx, param, values) -> dict:
    """The TrainingConfig settings of --set KEY=VALUE (VALUE read as JSON when it can be); a
    name that is not a setting is refused, naming the settings."""
    import dataclasses

    from delgrad_core._options import close_name_hint, parse_key_values
    from delgrad_core.training import TrainingConfig

    try:
        settings = parse_key_values(values, "--set")
    except InvalidValueError as exc:
        raise click.UsageError(str(exc)) from None
    known = sorted(spec.name for spec in dataclasses.fields(TrainingConfig))
    for key in settings:
        if key not in known:
            raise click.UsageError(f"--set: {key} is not a setting{close_name_hint(key, known)}; the settings "
                                   f"(docs/training.md): {', '.join(known)}")
    return settings


_OPTION_OF = {"backend_options": "--backend-option", "dataset_options": "--dataset-option"}  # (else --<name>)


def refuse_set_twice(settings: dict, options: dict) -> None:
    """Refuse a --set setting also given by its own option (`options`: setting -> the value of
    its option, None or {} if not given)."""
    for key in sorted(settings):
        if options.get(key) not in (None, {}):
            option = _OPTION_OF.get(key, f"--{key.replace('_', '-')}")
            raise click.UsageError(f"--set {key}={_typed(settings[key])}: {key} is given by {option} too; give it once")


def _typed(value) -> str:
    """A --set VALUE as typed: a string as itself (unless it reads as JSON), else JSON."""
    if isinstance(value, str):
        try:
            json.loads(value)
        except (ValueError, RecursionError):
            return value
    return json.dumps(value)


class RegularFile(click.Path):
    """An existing regular file (a FIFO or device passes click's `exists` and is read forever)."""

    def __init__(self):
        super().__init__(exists=True, dir_okay=False)

    def convert(self, value, param, ctx):
        path = super().convert(value, param, ctx)
        if not os.path.isfile(path):
            self.fail(f"{click.format_filename(path)!r} is not a regular file (a FIFO, device or socket); give a "
                      "TOML file", param, ctx)
        return path


#: --config of train, sweep and evaluate: one settings file (a repeat would silently keep the last)
CONFIG_FILE = {"type": RegularFile(), "multiple": True,
               "callback": given_once(lambda ctx, param, value: value,
                                      "one settings file (merge them into one; --set KEY=VALUE adds settings)")}
BACKEND_OPTION = click.option(
    "--backend-option", "backend_options", multiple=True, metavar="KEY=VALUE", callback=_key_values,
    help="Option for the backend (repeatable); VALUE is read as JSON when it can be, e.g. chip=3.")
SET_OPTION = click.option(
    "--set", "set_settings", multiple=True, metavar="KEY=VALUE", callback=_set_settings,
    help="Any TrainingConfig setting (repeatable; docs/training.md; not together with its own option), over "
         "--config's; VALUE is read as JSON when it can be, e.g. weight_lr=0.01 or keep_best=false.")
DATASET_OPTION = click.option(
    "--dataset-option", "dataset_options", multiple=True, metavar="KEY=VALUE", callback=_key_values,
    help="Option for the dataset's loader (repeatable; docs/datasets.md), e.g. size=14 for 14 x 14 images.")


def with_tables(settings: dict, **tables) -> dict:
    """`settings` with option tables given on the command line (e.g. backend_options) laid over
    its own tables of those names."""
    merged = dict(settings)
    for key, given in tables.items():
        if given:
            own = settings.get(key, {})
            if not isinstance(own, dict):
                raise InvalidValueError(f"{key}: expected a table (dict) of settings, got {own!r}")
            merged[key] = {**own, **given}
    return merged


def absolute_paths(settings: dict) -> dict:
    """`settings` (given now: a config file's and the command line's) with the relative paths
    of options named ``*_file``, ``*_dir`` or ``directory`` made absolute: a run records them
    and is resumed or evaluated from anywhere.  (URLs are left alone.)"""
    def absolute(name, value):
        is_path = (name.endswith(("_file", "_dir")) or name == "directory") and isinstance(value, str) \
            and value and "://" not in value
        return os.path.abspath(os.path.expanduser(value)) if is_path else value

    return {key: {name: absolute(name, value) for name, value in table.items()}
            if key in ("backend_options", "dataset_options") and isinstance(table, dict) else table
            for key, table in settings.items()}


def given_settings(config_file, options: dict, set_settings: dict | None = None) -> dict:
    """Config file values, overridden by the options given on the command line and the settings
    of --set (a file that is not TOML, or holds a bad setting, is a usage error)."""
    from delgrad_core.training import load_config

    try:
        values = load_config(config_file) if config_file else {}
    except (FileFormatError, InvalidValueError) as exc:  # (a --config file that is not TOML, or a bad setting)
        raise click.UsageError(str(exc)) from None
    given = {k: (f"--{k.replace('_', '-')} {_shown(v)}", v) for k, v in options.items() if v is not None}
    given.update({k: (f"--set {k}={_typed(v)}", v) for k, v in (set_settings or {}).items()})
    for key in sorted(set(given) & set(values)):
        typed, value = given[key]
        if value != values[key]:
            click.echo(f"note: {typed} replaces {key} = {values[key]!r} of {config_file}", err=True)
    values.update({key: value for key, (_, value) in given.items()})
    return values


def command_line_settings(config_file, options: dict, set_settings: dict, backend_options: dict,
                          dataset_options: dict) -> dict:
    """The settings of `delgrad train` and `delgrad sweep`: the config file's, under the options,
    --set and the option tables given on the command line, with relative paths made absolute."""
    settings = given_settings(config_file, options, set_settings)
    for key, given in (("backend_options", backend_options), ("dataset_options", dataset_options)):
        own = settings.get(key)
        for name in sorted(set(own) & set(given)) if isinstance(own, dict) else ():
            if own[name] != given[name]:
                click.echo(f"note: {_OPTION_OF[key]} {name}={_typed(given[name])} replaces {name} = {own[name]!r} "
                           f"of {key} of {config_file}", err=True)
    return absolute_paths(with_tables(settings, backend_options=backend_options, dataset_options=dataset_options))


def with_its_file(exc: InvalidValueError, config_file, options: dict, set_settings: dict, backend_options: dict,
                  dataset_options: dict) -> str:
    """The message of `exc`, the error of the setting it names first, led by the name of the
    config file when that setting came from the file and not also from the command line (the
    arguments of `command_line_settings`).  In an option table both gave (backend_options,
    dataset_options), the option the message is about decides: the file is named unless the
    command line gave it (or one of several unknown ones), or the message names none."""
    from delgrad_core.training import load_config

    message = str(exc)
    field = message.partition(":")[0]
    given_here = {key for key, value in options.items() if value is not None} | set(set_settings)
    if not config_file or field in given_here or message.startswith(f"{config_file}:"):
        return message
    table_here = {"backend_options": backend_options, "dataset_options": dataset_options}.get(field)
    if table_here:
        about = _options_named(message, field)
        if not about or not about.isdisjoint(table_here):
            return message
    return f"{config_file}: {message}" if field in load_config(config_file) else message


def _options_named(message: str, field: str) -> set:
    """The options an option-table error is about, as the core and the built-in components say
    it: "FIELD: backend 'x': OPTION: ..." (a dataset's: "FIELD: dataset 'x' (loading 'train'):
    OPTION: ...") or "FIELD: backend 'x': unknown option(s) A, B; ..." (empty for another form)."""
    said = re.match(rf"{field}: \w+ '[^']*'(?: \(loading '[^']*'\))?: (.*)", message, flags=re.DOTALL)
    if said is None:
        return set()
    unknown = re.match(r"unknown option\(s\) ([\w, ]+)", said.group(1))
    if unknown:
        return {name.strip() for name in unknown.group(1).split(",")}
    option = re.match(r"(\w+):", said.group(1))
    return {option.group(1)} if option else set()


def check_thread_variable() -> None:
    """A bad $DELGRAD_NUM_THREADS as a usage error before any work (it was found at the first
    job, after the data was loaded and the backend calibrated, and named as the backend's error)."""
    from delgrad_core._propagation import default_num_threads

    try:
        default_num_threads()
    except InvalidValueError as exc:
        raise click.UsageError(str(exc)) from None


PLUGIN_SETTINGS = ("backend", "dataset", "loss", "encoder")  # (settings naming what a plugin registers)


def plugin_named(settings: dict, kind: str) -> str:
    """The backend, dataset, ... (`kind`) that `settings` name, TrainingConfig's default if none."""
    from delgrad_core.training import TrainingConfig

    named = settings.get(kind)
    return named if named is not None else getattr(TrainingConfig, kind)


def without_replaced_options(settings: dict, named: dict, kinds) -> dict:
    """`settings` without the option tables of those of `kinds` (backend, dataset, ...) that
    `named` names otherwise: the options of one plugin are not another's."""
    replaced = {kind for kind in kinds if named.get(kind) not in (None, plugin_named(settings, kind))}
    return {key: value for key, value in settings.items() if key not in {f"{kind}_options" for kind in replaced}}


def refuse_no_default_backend(name: str | None) -> None:
    """Refuse to work with no backend installed at all (only the core), or, with none named
    (`name` None), on the default one when it cannot be used: not usage errors (a backend named but
    not installed is one)."""
    from delgrad_core._errors import UnknownNameError
    from delgrad_core._plugins import DEFAULT_BACKEND, not_installed, registry

    installed = registry().names("backend")
    if not installed:
        raise UnknownNameError(not_installed("backend", name or DEFAULT_BACKEND, []))
    if name is None and DEFAULT_BACKEND not in installed:
        remedy = "mend or upgrade the distribution that registers it" \
            if ("backend", DEFAULT_BACKEND) in registry().refused else "install it"
        raise UnknownNameError(f"{not_installed('backend', DEFAULT_BACKEND, installed)}; it is the default backend: "
                               f"{remedy}, or name an installed one with --backend")


def refuse_not_installed(stored: dict, given: dict, where, what: str, kinds=PLUGIN_SETTINGS) -> None:
    """Refuse a run whose own settings (`stored`) name a backend, dataset, loss or encoder (of
    `kinds`) that is not installed (not any more), unless another one is `given` here instead:
    the run is fine, the plugin is missing (not a usage error, not a damaged file).  `what`: the
    end of the message ({option}: --backend, ... for the kind; {remedy}: "install it", or what to
    do with a plugin installed but refused)."""
    from delgrad_core._errors import UnknownNameError, naming_the_plugins_seen
    from delgrad_core._plugins import installation_hint, registry

    for kind in kinds:
        name = stored.get(kind)
        if given.get(kind) is not None or not isinstance(name, str):
            continue
        installed = registry().names(kind)
        if name in installed:
            continue
        refused = registry().refused.get((kind, name))
        if refused is not None:  # (installed, but its registration was refused: not "not installed")
            raise UnknownNameError(f"{where}: the run was trained with {kind} {name!r}, which cannot be used: "
                                   f"{refused}; " + _filled(what, option=f"--{kind}", remedy="mend or upgrade the "
                                                                  "distribution that registers it"))
        hint = installation_hint(kind, name, installed)
        facts = [f"installed: {', '.join(installed)}" if installed else f"no {kind} is installed"] + \
            ([hint] if hint else [])
        raise UnknownNameError(naming_the_plugins_seen(  # (a plugin that failed to load is the likely cause)
            f"{where}: the run was trained with {kind} {name!r}, which is not installed ({'; '.join(facts)}); "
            + _filled(what, option=f"--{kind}", remedy="install it"), registry().failures))


def _filled(text: str, **fields: str) -> str:
    """`text` with each {NAME} of `fields` replaced (str.format would also read braces of a path)."""
    for name, value in fields.items():
        text = text.replace(f"{{{name}}}", value)
    return text


def _shown(value) -> str:
    """A command-line value as it was typed: 8,6 for a list."""
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def shortened(text: str, limit: int = 100) -> str:
    """`text`, its middle left out if it is longer than `limit` characters."""
    if len(text) <= limit:
        return text
    return f"{text[:limit // 2]}...({len(text) - limit + 20} characters)...{text[-(limit // 2 - 20):]}"


def check_out_names(out_dir: str) -> None:
    """Refuse an empty --out (it would be the working folder) and one whose folder names (or
    whole path) are longer than the file system allows, as a usage error naming --out (not the
    operating system's error echoing it)."""
    from delgrad_core._atomic import PATH_MAX, check_file_name

    if out_dir == "":
        raise click.UsageError("--out: expected a folder name, got ''")
    path = Path(out_dir)
    for part in [path, *path.parents]:
        if part.name:
            try:
                check_file_name(part)
            except InvalidValueError:
                size = len(os.fsencode(part.name))
                raise click.UsageError(f"--out: the folder name {shortened(part.name)!r} is {size} bytes long, "
                                       "more than the file system allows; choose a shorter name") from None
    size = len(os.fsencode(os.path.abspath(out_dir)))
    if size >= PATH_MAX:  # (the run's files are longer still)
        raise click.UsageError(f"--out: the path {shortened(out_dir)!r} is {size} bytes long, more than the file "
                               "system allows; choose a shorter one")


def check_not_a_run_file(path, param_hint: str) -> None:
    """Refuse `path` if it is one of the other files (metrics.json, checkpoint.npz,
    history.jsonl) of a run folder (one with a network or checkpoint file), which are no network
    file, naming the folder to give instead (each was refused only as an unreadable network file)."""
    from delgrad_core.training._run_folder import RunFolder

    path = Path(path)
    folder = RunFolder(path.parent)
    what = {folder.metrics: "metrics", folder.checkpoint: "checkpoint", folder.history_file: "history"}.get(path)
    if what is not None and path.is_file() and (folder.network.is_file() or folder.checkpoint.is_file()):
        instead = (f"give the run folder {folder.path} (its {folder.network.name})" if folder.network.is_file() else
                   f"the run in {folder.path} has not finished (no {folder.network.name} yet): continue it with "
                   f"`delgrad train --out {folder.path} --resume`, then give the run folder")
        raise click.BadParameter(f"{path} is a run's {what}, not a network file: {instead}", param_hint=param_hint)


def run_settings(path: Path) -> tuple[Path, dict, dict]:
    """(network file, the run's settings, its metrics) for a run folder or a network file;
    settings and metrics are {} for a network file outside a finished run folder."""
    from delgrad_core.training._config import shown_setting
    from delgrad_core.training._run_folder import RunFolder, is_accuracy

    folder = RunFolder(path if path.is_dir() else path.parent)
    network_file = folder.network if path.is_dir() else path
    metrics = folder.finished_metrics()
    if metrics is None or network_file != folder.network:
        if path.is_dir():
            writer = folder.writer()
            running = f"; {writer} is writing it: evaluate it when that run has finished" if writer else ""
            raise InvalidValueError(f"{path}: not a finished run folder (no metrics.json with a test "
                                    f"accuracy){running}")
        return network_file, {}, {}
    if not network_file.is_file():
        raise InvalidValueError(f"{path}: the run folder has no network file ({network_file.name}); it was deleted "
                                "or moved")
    if not is_accuracy(metrics["test_accuracy"]):  # (as `delgrad sweep` refuses it)
        raise FileFormatError(f"{folder.metrics}: not the metrics of a finished run (test_accuracy: expected a number "
                              f"in [0, 1], got {json.dumps(metrics['test_accuracy'])}); a damaged or edited file")
    if "config" not in metrics:
        raise FileFormatError(f"{folder.metrics}: not the metrics of a finished run (no 'config', the table of the "
                              "run's settings); a damaged or edited file")
    settings = metrics["config"]
    if not isinstance(settings, dict) or not settings:
        raise FileFormatError(f"{folder.metrics}: its 'config' is not a table of the run's settings (got "
                              f"{shown_setting(settings)}); a damaged or edited file")
    return network_file, settings, metrics


def trained_on_a_representing_backend(path, backend_name) -> str | None:
    """The start of a note that the run at `path` was trained on backend `backend_name`, whose
    registered capabilities let its `represent` change a network (weight or delay limits or
    grids, inputs in copies); None if they do not, or it is not installed or registers none."""
    from delgrad_core import backend_info

    try:
        capabilities = backend_info(backend_name).capabilities
    except (LookupError, TypeError):  # (not installed here; no name recorded)
        return None
    if capabilities is None or not capabilities.constrains_parameters:
        return None
    return (f"note: {path} was trained on backend {backend_name!r}, which declares limits, grids or input copies by "
            "which it may run the network otherwise than stored (its represent(): e.g. a chip's clipped, quantised "
            "weights)")
