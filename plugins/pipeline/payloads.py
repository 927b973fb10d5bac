"""What the pipeline plugin accepts: its settings, the payloads of its events
and HTTP bodies, and the checks of lead fields."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import attrs
from attrs.validators import optional
from switchboard.core import (
    ClientError,
    check_identifier,
    identifier,
    is_room_name,
    max_length,
    text,
)

LEAD_ROOM = "lead:"
BOARD_ROOM = "pipeline:"
MAX_TITLE_LENGTH = 500
MAX_TAGS = 50
MAX_TAG_LENGTH = 100
MAX_FIELDS = 100
MAX_FIELD_NAME_LENGTH = 100
MAX_TEXT_LENGTH = 2000
MAX_VALUE = 1e15
#: The contact's fields, each text.
CONTACT_FIELDS = ("name", "email", "phone", "company")
#: What ``lead:update`` may change (client names).
UPDATABLE = ("title", "contact", "value", "customerId", "tags", "fields")


def id_problem(value: str, prefix: str) -> str | None:
    """What is wrong with ``value`` as a lead or pipeline id (it also names a
    room ``{prefix}{id}``); None if nothing."""
    problem = check_identifier(value)
    if problem is None and not is_room_name(prefix + value):
        problem = "must be letters, digits and _.:@+-"
    return problem


def _lead_id(instance: Any, attribute: attrs.Attribute[Any], value: str) -> None:
    if (problem := id_problem(value, LEAD_ROOM)) is not None:
        raise ValueError(problem, attribute)


def _pipeline_id(instance: Any, attribute: attrs.Attribute[Any], value: str) -> None:
    if (problem := id_problem(value, BOARD_ROOM)) is not None:
        raise ValueError(problem, attribute)


def _version(instance: Any, attribute: attrs.Attribute[Any], value: int) -> None:
    if not 1 <= value <= 2**62:
        raise ValueError("must be a version this lead had (1 or more)", attribute)


def _limit(instance: Any, attribute: attrs.Attribute[Any], value: int) -> None:
    if not 1 <= value <= 1000:
        raise ValueError("must be from 1 to 1000", attribute)


def invalid(field: str, problem: str) -> ClientError:
    return ClientError("invalid_payload", f"{field}: {problem}", field=field)


def check_lead_id(value: object, field: str = "leadId") -> str:
    """``value`` as a lead id, or ``invalid_payload`` naming ``field``."""
    if not isinstance(value, str):
        raise invalid(field, "must be a string")
    if (problem := id_problem(value, LEAD_ROOM)) is not None:
        raise invalid(field, problem)
    return value


def check_user_id(value: object, field: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise invalid(field, "must be a string or null")
    if (problem := check_identifier(value)) is not None:
        raise invalid(field, problem)
    return value


def _text(value: object, field: str, limit: int) -> str:
    if not isinstance(value, str):
        raise invalid(field, "must be a string")
    if "\x00" in value:
        raise invalid(field, "must not contain NUL characters")
    if len(value) > limit:
        raise invalid(field, f"longer than {limit} characters")
    return value


def check_title(value: object) -> str:
    title = _text(value, "title", MAX_TITLE_LENGTH)
    if not title.strip():
        raise invalid("title", "must not be empty")
    return title


def check_contact(value: object) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise invalid("contact", "must be an object")
    contact: dict[str, Any] = {}
    for key, item in value.items():
        if key not in CONTACT_FIELDS:
            raise invalid(f"contact.{key}" if isinstance(key, str) else "contact",
                          f"must be one of {', '.join(CONTACT_FIELDS)}")
        if item is not None:
            contact[key] = _text(item, f"contact.{key}", MAX_TEXT_LENGTH)
    return contact


def check_value(value: object) -> float | None:
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise invalid("value", "must be a number or null")
    if not _finite(value):
        raise invalid("value", f"must be a finite number within ±{MAX_VALUE:g}")
    return float(value)


def _finite(number: int | float) -> bool:
    """Within ±MAX_VALUE (an int of any size, a float not NaN or infinite)."""
    return -MAX_VALUE <= number <= MAX_VALUE if isinstance(number, int) \
        else math.isfinite(number) and -MAX_VALUE <= number <= MAX_VALUE


def check_tags(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise invalid("tags", "must be a list of strings")
    if len(value) > MAX_TAGS:
        raise invalid("tags", f"at most {MAX_TAGS}")
    tags: list[str] = []
    for n, tag in enumerate(value):
        tag = _text(tag, f"tags.{n}", MAX_TAG_LENGTH)
        if tag and tag not in tags:
            tags.append(tag)
    return tuple(tags)


def check_fields(value: object) -> dict[str, Any]:
    """Custom fields: names to strings, numbers, booleans or null."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise invalid("fields", "must be an object")
    if len(value) > MAX_FIELDS:
        raise invalid("fields", f"at most {MAX_FIELDS} fields")
    fields: dict[str, Any] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not 0 < len(key) <= MAX_FIELD_NAME_LENGTH \
                or "\x00" in key:
            raise invalid("fields", f"names must be 1 to {MAX_FIELD_NAME_LENGTH} characters")
        name = f"fields.{key}"
        if isinstance(item, str):
            fields[key] = _text(item, name, MAX_TEXT_LENGTH)
        elif item is None or isinstance(item, bool):
            fields[key] = item
        elif isinstance(item, int | float):
            if not _finite(item):
                raise invalid(name, f"must be a finite number within ±{MAX_VALUE:g}")
            fields[key] = item
        else:
            raise invalid(name, "must be a string, a number, a boolean or null")
    return fields


def check_changes(changes: object) -> dict[str, Any]:
    """The changes of ``lead:update`` checked, by client name."""
    if not isinstance(changes, Mapping) or not changes:
        raise invalid("changes", "must be an object with at least one field")
    checked: dict[str, Any] = {}
    for key, value in changes.items():
        if key == "title":
            checked[key] = check_title(value)
        elif key == "contact":
            checked[key] = check_contact(value)
        elif key == "value":
            checked[key] = check_value(value)
        elif key == "customerId":
            checked[key] = check_user_id(value, "customerId")
        elif key == "tags":
            checked[key] = list(check_tags(value))
        elif key == "fields":
            checked[key] = check_fields(value)
        else:
            raise invalid(f"changes.{key}" if isinstance(key, str) else "changes",
                          f"must be one of {', '.join(UPDATABLE)}")
    return checked


# -- settings ---------------------------------------------------------------------------


@attrs.frozen
class StageConfig:
    id: str = attrs.field(validator=identifier)
    name: str = attrs.field(validator=[text, max_length(200)])


@attrs.frozen
class PipelineConfig:
    id: str = attrs.field(validator=_pipeline_id)
    name: str = attrs.field(validator=[text, max_length(200)])
    stages: list[StageConfig]
    #: The tenant it is for; ``*``: every tenant.
    tenant: str = "*"
    #: The tenant's default pipeline (where a lead without a pipeline goes).
    default: bool = False

    def __attrs_post_init__(self) -> None:
        if not self.stages:
            raise ValueError("a pipeline needs at least one stage")
        ids = [s.id for s in self.stages]
        if len(set(ids)) != len(ids):
            raise ValueError("stage ids must be unique")


def _batch_interval(instance: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError("batch_interval: seconds from 0 to 1")


def _default_pipelines() -> list[PipelineConfig]:
    return [PipelineConfig("default", "Sales", [
        StageConfig("novo", "Novo"), StageConfig("qualificacao", "Qualificação"),
        StageConfig("proposta", "Proposta"), StageConfig("negociacao", "Negociação"),
        StageConfig("ganho", "Ganho"), StageConfig("perdido", "Perdido")], default=True)]


@attrs.frozen
class PipelineSettings:
    #: Pipelines every tenant (or the one named) has without creating them.
    pipelines: list[PipelineConfig] = attrs.Factory(_default_pipelines)
    #: Changes written in one transaction, at most.
    max_batch: int = attrs.field(default=200, validator=attrs.validators.ge(1))
    #: Seconds at least between the starts of two write transactions. Under a
    #: steady stream of changes those of that time share one transaction and
    #: go out to each board in one write instead of one each (a board of 100
    #: is 100 socket writes per batch); a change after a quiet moment is
    #: written at once. 0: a batch starts as soon as the one before is done.
    batch_interval: float = attrs.field(default=0.004, validator=_batch_interval)
    #: Default and largest page of a stage's leads.
    page_size: int = attrs.field(default=50, validator=attrs.validators.ge(1))
    page_max: int = attrs.field(default=200, validator=attrs.validators.ge(1))
    #: A join of ``lead:{id}`` or ``pipeline:{id}`` for an id this plugin does
    #: not know: ``defer`` to the other join policies (the default room policy
    #: lets the tenant's agents in; a join proxy decides for leads the
    #: deployment keeps in its own backend), or ``not_found``.
    unknown_leads: Literal["not_found", "defer"] = "defer"


# -- payloads of events -------------------------------------------------------------------


@attrs.frozen
class BoardRef:
    pipelineId: str | None = attrs.field(default=None, validator=optional(_pipeline_id))


@attrs.frozen
class LeadRef:
    leadId: str = attrs.field(validator=_lead_id)


@attrs.frozen
class ListLeads:
    stageId: str = attrs.field(validator=identifier)
    pipelineId: str | None = attrs.field(default=None, validator=optional(_pipeline_id))
    cursor: str | None = attrs.field(default=None, validator=optional(max_length(1000)))
    limit: int | None = attrs.field(default=None, validator=optional(_limit))


@attrs.frozen
class CreateLead:
    title: Any
    pipelineId: str | None = attrs.field(default=None, validator=optional(_pipeline_id))
    stageId: str | None = attrs.field(default=None, validator=optional(identifier))
    id: str | None = attrs.field(default=None, validator=optional(_lead_id))
    contact: Any = None
    value: Any = None
    ownerId: str | None = attrs.field(default=None, validator=optional(identifier))
    customerId: str | None = attrs.field(default=None, validator=optional(identifier))
    tags: Any = None
    fields: Any = None
    #: HTTP only: the tenant (else the API key's).
    tenant: str | None = attrs.field(default=None, validator=optional(identifier))
    #: HTTP only: who the activity log names (else the API key's name).
    actor: str | None = attrs.field(default=None, validator=optional(identifier))


@attrs.frozen
class UpdateLead:
    leadId: str = attrs.field(validator=_lead_id)
    changes: Any
    version: int | None = attrs.field(default=None, validator=optional(_version))


@attrs.frozen
class MoveLead:
    leadId: str = attrs.field(validator=_lead_id)
    stageId: str = attrs.field(validator=identifier)
    afterId: str | None = attrs.field(default=None, validator=optional(_lead_id))
    beforeId: str | None = attrs.field(default=None, validator=optional(_lead_id))
    version: int | None = attrs.field(default=None, validator=optional(_version))


@attrs.frozen
class AssignLead:
    leadId: str = attrs.field(validator=_lead_id)
    ownerId: str | None = attrs.field(validator=optional(identifier))
    version: int | None = attrs.field(default=None, validator=optional(_version))


@attrs.frozen
class DeleteLead:
    leadId: str = attrs.field(validator=_lead_id)
    version: int | None = attrs.field(default=None, validator=optional(_version))


@attrs.frozen
class ActivityRequest:
    leadId: str = attrs.field(validator=_lead_id)
    before: int | None = attrs.field(default=None, validator=optional(_version))
    limit: int | None = attrs.field(default=None, validator=optional(_limit))


# -- bodies of HTTP requests (the lead id is in the path) ----------------------------------


@attrs.frozen
class HttpUpdate:
    changes: Any
    tenant: str | None = attrs.field(default=None, validator=optional(identifier))
    actor: str | None = attrs.field(default=None, validator=optional(identifier))
    version: int | None = attrs.field(default=None, validator=optional(_version))


@attrs.frozen
class HttpMove:
    stageId: str = attrs.field(validator=identifier)
    afterId: str | None = attrs.field(default=None, validator=optional(_lead_id))
    beforeId: str | None = attrs.field(default=None, validator=optional(_lead_id))
    tenant: str | None = attrs.field(default=None, validator=optional(identifier))
    actor: str | None = attrs.field(default=None, validator=optional(identifier))
    version: int | None = attrs.field(default=None, validator=optional(_version))


@attrs.frozen
class HttpAssign:
    ownerId: str | None = attrs.field(validator=optional(identifier))
    tenant: str | None = attrs.field(default=None, validator=optional(identifier))
    actor: str | None = attrs.field(default=None, validator=optional(identifier))
    version: int | None = attrs.field(default=None, validator=optional(_version))


@attrs.frozen
class CreatePipeline:
    id: str = attrs.field(validator=_pipeline_id)
    name: str = attrs.field(validator=[text, max_length(200)])
    stages: list[StageConfig]
    tenant: str | None = attrs.field(default=None, validator=optional(identifier))

    def __attrs_post_init__(self) -> None:
        if not self.stages:
            raise ValueError("a pipeline needs at least one stage")
        ids = [s.id for s in self.stages]
        if len(set(ids)) != len(ids):
            raise ValueError("stage ids must be unique")
