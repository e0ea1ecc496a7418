"""The labelling config: which tags the backend answers, and the cluster -> label rule."""

from __future__ import annotations

import pytest

from annotations.labels import join_cluster
from label_studio_backend.errors import LabelStudioError
from label_studio_backend.label_config import parse_label_config

AUDIO = """<View>
  <Header value="Label the calls"/>
  <Audio name="audio" value="$recording" hotkey="space"/>
  <Labels name="call" toName="audio">{labels}</Labels>
</View>"""


def config(*labels: str) -> str:
    return AUDIO.format(labels="".join(labels))


def test_an_audio_object_with_labels_is_read() -> None:
    labelling = parse_label_config(config('<Label value="vocal"/>'))
    assert (labelling.from_name, labelling.to_name, labelling.data_key) == (
        "call",
        "audio",
        "recording",
    )
    assert [label.value for label in labelling.labels] == ["vocal"]


def test_the_older_audioplus_tag_is_read_too() -> None:
    xml = """<View><AudioPlus name="a" value="$audio"/>
      <Labels name="l" toName="a"><Label value="song"/></Labels></View>"""
    assert parse_label_config(xml).to_name == "a"


def test_a_single_label_takes_every_segment() -> None:
    labelling = parse_label_config(config('<Label value="call"/>'))
    assert labelling.label_for("vocal") == "call"
    assert labelling.label_for(join_cluster("zebra finch", "bird1", "syllable A")) == "call"


def test_several_labels_match_the_cluster_name_or_alias_else_the_first() -> None:
    labelling = parse_label_config(
        config('<Label value="Noise"/>', '<Label value="A"/>', '<Label value="B" alias="b2"/>')
    )
    assert labelling.label_for("a") == "A"
    assert labelling.label_for(join_cluster("Unknown", "Unknown", "B")) == "B"
    assert labelling.label_for("B2") == "B"
    assert labelling.label_for("vocal") == "Noise"  # the first label is the catch-all


def test_the_annotated_area_label_is_never_predicted() -> None:
    labelling = parse_label_config(config('<Label value="Annotated area"/>', '<Label value="x"/>'))
    assert labelling.area_label == "Annotated area"
    assert labelling.label_for("annotated area") == "x"
    assert [label.value for label in labelling.predicted] == ["x"]


@pytest.mark.parametrize(
    ("xml", "says"),
    [
        ("", "no labelling config"),
        ("<View><Audio", "not valid XML"),
        ('<View><Image name="i" value="$image"/></View>', "no <Audio>"),
        ('<View><Audio name="audio" value="$a"/></View>', "no <Labels> control"),
        (
            '<View><Audio name="audio" value="$a"/><Audio name="b" value="$b"/>'
            '<Labels name="l" toName="b"/></View>',
            "has no <Label value=...>",
        ),
        (
            '<View><Audio name="audio" value="$a"/>'
            '<Labels name="l" toName="other"><Label value="x"/></Labels></View>',
            "no <Labels> control has toName",
        ),
        (
            '<View><Audio name="audio" value="audio.wav"/>'
            '<Labels name="l" toName="audio"><Label value="x"/></Labels></View>',
            'value="$key"',
        ),
        (config('<Label value="Annotated area"/>'), "has no <Label value=...>"),
    ],
)
def test_unsupported_configs_are_refused_saying_why(xml: str, says: str) -> None:
    with pytest.raises(LabelStudioError) as refused:
        parse_label_config(xml)
    assert refused.value.status == 400
    assert says in refused.value.message
