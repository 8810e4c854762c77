"""Every exception class of the project survives pickling with its attributes, so one that crosses a task
boundary (a Celery worker, a retry) arrives as itself, not as an UnpickleableExceptionWrapper.

The classes are found in the source (every class statement under backoffice/ and tasks/), so a class added
tomorrow is covered without being listed here. Each is built from its own __init__ signature.
"""
from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import pickle
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("backoffice", "tasks")


def exception_classes() -> list[type[BaseException]]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            names = [node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef)]
            if not names:
                continue  # a module without classes is not imported (tasks/worker.py builds an app on import)
            module_name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            module = importlib.import_module(module_name)
            for name in names:
                cls = getattr(module, name, None)
                if inspect.isclass(cls) and issubclass(cls, BaseException) and cls.__module__ == module.__name__:
                    found.append(cls)
    return found


def sample(name: str, annotation, module=None) -> object:
    """A value of the parameter's declared type (annotations are text under `from __future__ import annotations`);
    a dataclass of the exception's own module is built from samples of its fields."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    declared = getattr(module, text, None) if module is not None else None
    if dataclasses.is_dataclass(declared):
        return declared(**{f.name: sample(f.name, f.type, module) for f in dataclasses.fields(declared)})
    if "bool" in text:
        return True
    if "dict" in text:
        return {"npi": "Enter the organisation's NPI."}
    if "list" in text or "tuple" in text:
        return [f"{name} one", f"{name} two"]
    if "int" in text:
        return 42
    return f"the {name}"


def build(cls: type[BaseException]) -> BaseException:
    init = cls.__init__
    if init is BaseException.__init__ or init is Exception.__init__ or not inspect.isfunction(init):
        return cls(f"{cls.__name__} happened")
    args, kwargs = [], {}
    for parameter in list(inspect.signature(init).parameters.values())[1:]:
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        value = sample(parameter.name, parameter.annotation, sys.modules[cls.__module__])
        if parameter.kind == parameter.KEYWORD_ONLY:
            kwargs[parameter.name] = value
        else:
            args.append(value)
    return cls(*args, **kwargs)


CLASSES = exception_classes()


def test_the_search_finds_the_exceptions_that_cross_task_boundaries():
    names = {cls.__name__ for cls in CLASSES}
    assert {"OutboundError", "OutboundRefused", "NppesFormatError", "DomainError", "Conflict", "NotAllowed",
            "InvalidTransition", "IncompleteRequest", "ChainLockMissing"} <= names, names


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: f"{cls.__module__}.{cls.__name__}")
def test_every_exception_class_round_trips_through_pickle(cls):
    original = build(cls)
    copy = pickle.loads(pickle.dumps(original))
    assert type(copy) is cls
    assert str(copy) == str(original)
    assert copy.args == original.args
    assert vars(copy) == vars(original)


def test_attributes_that_views_and_tasks_read_survive():
    from backoffice.checks.http import OutboundError
    from backoffice.services.errors import Conflict
    from backoffice.services.listing_requests import IncompleteRequest

    dns = pickle.loads(pickle.dumps(OutboundError("dns", "npi.example could not be resolved", transient=False)))
    assert (dns.kind, dns.detail, dns.transient, str(dns)) == (
        "dns", "npi.example could not be resolved", False, "dns: npi.example could not be resolved")
    conflict = pickle.loads(pickle.dumps(Conflict("Someone else decided first.", field="decision")))
    assert (str(conflict), conflict.field) == ("Someone else decided first.", "decision")
    incomplete = pickle.loads(pickle.dumps(IncompleteRequest({"npi": "Enter the NPI."})))
    assert incomplete.missing == {"npi": "Enter the NPI."} and incomplete.field is None
    assert str(incomplete) == "Complete the highlighted fields before you submit."
