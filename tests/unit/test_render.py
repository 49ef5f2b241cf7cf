"""Rendering and linting templates: the errors a template author meets, and the lint cache."""

from __future__ import annotations

import hashlib

import pytest

from edl.cloudformation import render
from edl.cloudformation.render import (
    RenderedTemplate,
    lint_templates,
    parse_template,
    render_template,
    template_context,
    template_names,
)
from edl.config import load_config
from edl.errors import TemplateError
from edl.paths import cache_dir

CONFIG = load_config()
TEMPLATES = ("artifacts.yaml", "athena.yaml", "buckets.yaml", "default_acls.yaml", "folder_acls.yaml",
             "ingest_job.yaml", "lambda_project.yaml", "metadata.yaml", "pipeline.yaml", "rest_api.yaml",
             "sweeper.yaml")

CLEAN_BODY = """\
AWSTemplateFormatVersion: "2010-09-09"
Description: a bucket
Parameters:
  BucketName:
    Type: String
Resources:
  Bucket:
    Type: AWS::S3::Bucket
    Properties:
      BucketName: !Ref BucketName
Outputs:
  Bucket:
    Value: !Ref Bucket
"""


def context(instance: str = "local") -> dict:
    return template_context(CONFIG, CONFIG.instance(instance))


@pytest.fixture
def own_templates(tmp_path, monkeypatch):
    """Point the renderer at a private templates folder; returns a function that writes one."""
    folder = tmp_path / "templates"
    folder.mkdir()
    monkeypatch.setattr(render, "TEMPLATES_DIR", folder)
    render._environment.cache_clear()
    yield lambda name, text: (folder / name).write_text(text)
    render._environment.cache_clear()


@pytest.fixture
def lint_calls(monkeypatch):
    """Count the times cfn-lint actually validates a template."""
    from cfnlint.runner import Runner

    calls = []
    real = Runner.validate_template

    def counting(self, template):
        calls.append(template)
        return real(self, template)

    monkeypatch.setattr(Runner, "validate_template", counting)
    return calls


def line_of(body: str, text: str) -> int:
    return next(n for n, line in enumerate(body.splitlines(), 1) if text in line)


# --- rendering -------------------------------------------------------------------------------

def test_template_names_lists_every_template():
    assert template_names() == sorted(TEMPLATES)


def test_missing_variable_names_template_line_and_name(own_templates):
    own_templates("stack.yaml", "a: 1\nb: 2\nc: {{ foo }}\n")
    with pytest.raises(TemplateError) as err:
        render_template("stack.yaml", context())
    assert err.value.message == "stack.yaml line 3: 'foo' is undefined"


def test_missing_attribute_names_template_line_and_attribute(own_templates):
    own_templates("stack.yaml", "a: 1\n{% if instance.colour %}\nb: 2\n{% endif %}\n")
    with pytest.raises(TemplateError) as err:
        render_template("stack.yaml", context())
    assert err.value.message.startswith("stack.yaml line 2: ")
    assert "has no attribute 'colour'" in err.value.message


def test_error_in_an_included_file_names_that_file(own_templates):
    own_templates("_tags.j2", "tags:\n  owner: {{ owner }}\n")
    own_templates("stack.yaml", "a: 1\n{% include '_tags.j2' %}\n")
    with pytest.raises(TemplateError) as err:
        render_template("stack.yaml", context())
    assert err.value.message == "_tags.j2 line 2: 'owner' is undefined"


def test_real_template_without_its_context_names_the_missing_name():
    with pytest.raises(TemplateError) as err:
        render_template("buckets.yaml", {"bucket_prefix": "sanofi-datalake"})
    assert err.value.message.startswith("buckets.yaml line ")
    assert err.value.message.endswith("'instance' is undefined")


def test_syntax_error_names_template_and_line(own_templates):
    own_templates("stack.yaml", "a: 1\nb: 2\n{% if instance.is_local %}\nc: 3\n{% endfi %}\n")
    with pytest.raises(TemplateError) as err:
        render_template("stack.yaml", context())
    assert err.value.message.startswith("stack.yaml line 5: ")


def test_unknown_template_lists_the_known_ones():
    with pytest.raises(TemplateError) as err:
        render_template("bukcets.yaml", context())
    assert "bukcets.yaml" in err.value.message
    assert "buckets.yaml" in err.value.hint


def test_rendering_keeps_the_trailing_newline_and_hashes_the_body():
    rendered = render_template("metadata.yaml", context())
    assert rendered.name == "metadata.yaml"
    assert rendered.body.endswith("\n")
    assert rendered.sha256 == hashlib.sha256(rendered.body.encode()).hexdigest()


def test_parse_template_decodes_short_tags():
    parsed = parse_template(CLEAN_BODY)
    assert parsed["Resources"]["Bucket"]["Properties"]["BucketName"] == {"Ref": "BucketName"}


def test_parse_template_names_the_bad_line():
    with pytest.raises(TemplateError) as err:
        parse_template("a: 1\nb: [unclosed\n", name="stack.yaml")
    assert err.value.message.startswith("stack.yaml line ")


# --- linting ---------------------------------------------------------------------------------

@pytest.mark.parametrize("instance", sorted(CONFIG.instances))
def test_every_template_renders_and_lints_clean_for_every_instance(instance):
    inst = CONFIG.instance(instance)
    rendered = [render_template(name, context(instance)) for name in template_names()]
    lint_templates(rendered, inst.regions)  # raises on any error or warning


def test_a_clean_result_is_cached_on_disk(lint_calls, edl_home, tmp_path, monkeypatch):
    same = [RenderedTemplate("a.yaml", CLEAN_BODY), RenderedTemplate("b.yaml", CLEAN_BODY)]
    lint_templates(same, ["us-east-1"])
    assert len(lint_calls) == 1  # identical bodies are linted once
    assert list((cache_dir() / "lint").glob("*.json"))

    lint_templates(same, ["us-east-1"])
    assert len(lint_calls) == 1  # unchanged template: no cfn-lint at all

    lint_templates(same, ["us-east-1", "eu-west-1"])
    assert len(lint_calls) == 2  # other regions are another question

    monkeypatch.setenv("EDL_HOME", str(tmp_path / "another-home"))
    lint_templates(same, ["us-east-1"])
    assert len(lint_calls) == 3  # the cache is the one on disk, not in memory


def test_unknown_property_is_an_error_naming_template_and_line(lint_calls):
    body = CLEAN_BODY.replace("      BucketName: !Ref BucketName\n",
                              "      BucketName: !Ref BucketName\n      Colour: blue\n")
    broken = RenderedTemplate("buckets.yaml", body)
    with pytest.raises(TemplateError) as err:
        lint_templates([broken], ["us-east-1"])
    line = line_of(body, "Colour: blue")
    assert f"buckets.yaml line {line}: E3002 " in err.value.message
    assert "Colour" in err.value.message

    with pytest.raises(TemplateError):  # a failed result is never cached
        lint_templates([broken], ["us-east-1"])
    assert len(lint_calls) == 2


def test_warnings_stop_too_and_every_template_with_the_body_is_named():
    body = CLEAN_BODY.replace("Resources:", "  Unused:\n    Type: String\nResources:")
    templates = [RenderedTemplate("one.yaml", body), RenderedTemplate("two.yaml", body)]
    with pytest.raises(TemplateError) as err:
        lint_templates(templates, ["us-east-1"])
    line = line_of(body, "Unused:")
    assert f"one.yaml line {line}: W2001 " in err.value.message
    assert f"two.yaml line {line}: W2001 " in err.value.message


def test_every_problem_is_listed_not_only_the_first():
    bad_yaml = RenderedTemplate("bad.yaml", "a: [\n")
    bad_prop = RenderedTemplate("prop.yaml", CLEAN_BODY.replace("BucketName: !Ref", "Name: !Ref"))
    with pytest.raises(TemplateError) as err:
        lint_templates([bad_yaml, bad_prop], ["us-east-1"])
    assert "bad.yaml line " in err.value.message
    assert "prop.yaml line " in err.value.message


def test_a_region_cfn_lint_does_not_know_is_a_template_error():
    with pytest.raises(TemplateError) as err:
        lint_templates([RenderedTemplate("a.yaml", CLEAN_BODY)], ["xx-nowhere-1"])
    assert "xx-nowhere-1" in err.value.message
