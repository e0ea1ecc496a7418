"""A Label Studio labelling config, as far as this backend needs it, and the label rule.

The backend answers projects whose config has an ``<Audio>`` (or the older ``<AudioPlus>``)
object and a ``<Labels>`` control pointing at it (``toName``)::

    <View>
      <Audio name="audio" value="$audio"/>
      <Labels name="label" toName="audio">
        <Label value="vocal"/>
      </Labels>
    </View>

**Label rule** (model cluster name -> the config's label value), in order:

1. with a single label value (the annotated-area label aside), every segment takes it;
2. else the label whose value or ``alias`` equals the segment's cluster name, ignoring case
   (a model finetuned from this project predicts exactly the project's label values);
3. else the first label value of the config: put the catch-all label first.

A label whose value is ``Annotated area`` (any case) marks the stretches a person labelled
completely; it is only read for training and never predicted.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from annotations.labels import split_cluster
from label_studio_backend.errors import LabelStudioError

AUDIO_TAGS = ("audio", "audioplus")
ANNOTATED_AREA = "annotated area"
RESULT_TYPE = "labels"


@dataclass(frozen=True)
class LabelValue:
    value: str
    alias: str | None = None

    def matches(self, name: str) -> bool:
        folded = name.casefold()
        return self.value.casefold() == folded or (self.alias or "").casefold() == folded


@dataclass(frozen=True)
class AudioLabelling:
    """The ``<Labels>`` control (``from_name``) over one audio object (``to_name``)."""

    from_name: str
    to_name: str
    data_key: str  # the task data key holding the audio URL ("audio" for value="$audio")
    labels: tuple[LabelValue, ...]  # in config order, the annotated-area label included

    @property
    def predicted(self) -> tuple[LabelValue, ...]:
        """The labels a segment may take: all but the annotated-area label."""
        return tuple(label for label in self.labels if not is_area_label(label.value))

    @property
    def area_label(self) -> str | None:
        return next((lb.value for lb in self.labels if is_area_label(lb.value)), None)

    def label_for(self, cluster: str) -> str:
        """The config's label value for a model's cluster name (the rule above)."""
        predicted = self.predicted
        if len(predicted) == 1:
            return predicted[0].value
        names = (split_cluster(cluster)[2], cluster)
        for label in predicted:
            if any(label.matches(name) for name in names):
                return label.value
        return predicted[0].value


def is_area_label(value: str) -> bool:
    return value.strip().casefold() == ANNOTATED_AREA


def parse_label_config(config: str | None) -> AudioLabelling:
    """The first ``<Labels>`` control over an ``<Audio>``/``<AudioPlus>`` object.

    Raises :class:`LabelStudioError` (400) naming what is missing.
    """
    if not config or not config.strip():
        raise LabelStudioError(400, "The project has no labelling config")
    try:
        root = ET.fromstring(config)
    except ET.ParseError as exc:
        raise LabelStudioError(400, f"The labelling config is not valid XML: {exc}") from None
    elements = list(root.iter())
    audio = {e.get("name"): e for e in elements if e.tag.lower() in AUDIO_TAGS and e.get("name")}
    if not audio:
        raise LabelStudioError(
            400,
            "Unsupported labelling config: it has no <Audio> (or <AudioPlus>) object; "
            "this backend segments audio",
        )
    for control in elements:
        if control.tag.lower() != "labels" or control.get("toName") not in audio:
            continue
        to_name = control.get("toName", "")
        values = tuple(
            LabelValue(label.get("value", ""), label.get("alias"))
            for label in control
            if label.tag.lower() == "label" and label.get("value")
        )
        if not [v for v in values if not is_area_label(v.value)]:
            raise LabelStudioError(
                400,
                f"Unsupported labelling config: <Labels name={control.get('name')!r}> has "
                "no <Label value=...> to give the segments",
            )
        return AudioLabelling(
            from_name=control.get("name", ""),
            to_name=to_name,
            data_key=_data_key(audio[to_name]),
            labels=values,
        )
    names = ", ".join(repr(name) for name in audio)
    raise LabelStudioError(
        400,
        f"Unsupported labelling config: no <Labels> control has toName set to the audio "
        f'object ({names}); add <Labels name="label" toName="..."> with <Label> values',
    )


def _data_key(audio: ET.Element) -> str:
    value = audio.get("value", "")
    if not value.startswith("$") or len(value) < 2:
        raise LabelStudioError(
            400,
            f"Unsupported labelling config: <{audio.tag} name={audio.get('name')!r}> needs "
            f'value="$key" naming the task data key of the audio URL (got {value!r})',
        )
    return value[1:]
