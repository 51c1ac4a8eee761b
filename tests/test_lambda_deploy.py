"""The CloudFormation template: valid for cfn-lint, and configuring the function it deploys."""

import subprocess
import sys
import types
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError
from cfnlint.decode import decode
from moto import mock_aws

from replication.lambda_function import load_config
from tests.lambda_support import CONFIG_VARS

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = sorted((ROOT / "deploy").glob("*.yaml"))
CFN_LINT = Path(sys.executable).with_name("cfn-lint")


def template() -> dict:
    document, problems = decode(str(ROOT / "deploy" / "replicator.yaml"))
    assert not problems
    return document


def test_deploy_templates_pass_cfn_lint():
    assert TEMPLATES, "deploy/ holds no template"

    completed = subprocess.run(
        [str(CFN_LINT), *map(str, TEMPLATES)], capture_output=True, text=True, cwd=ROOT
    )

    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_template_sets_only_variables_the_handler_reads():
    document = template()
    function = document["Resources"]["Function"]["Properties"]
    variables = function["Environment"]["Variables"]
    parameters = document["Parameters"]
    # Each variable is a parameter; deploy with every default and a backup bucket name.
    environ = {
        name: parameters[value["Ref"]].get("Default", "photos-bak")
        for name, value in variables.items()
    }

    config = load_config(environ)

    assert set(variables) <= set(CONFIG_VARS)
    assert function["Handler"] == "lambda_function.lambda_handler"
    assert config.route_for("photos-src").destination_bucket == "photos-bak"
    assert config.mirror_deletes is False


def test_template_gives_delete_permission_only_when_deletes_are_mirrored():
    statements = template()["Resources"]["Role"]["Properties"]["Policies"][0]["PolicyDocument"][
        "Statement"
    ]
    delete_grants = [
        s for s in statements if "Fn::If" in s and s["Fn::If"][1].get("Sid") == "MirrorDeletes"
    ]
    unconditional_actions = [
        action
        for s in statements
        if "Action" in s
        for action in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    ]

    assert [grant["Fn::If"][0] for grant in delete_grants] == ["DeletesMirrored"]
    assert "s3:DeleteObject" not in unconditional_actions
    assert not any(action.endswith("*") for action in unconditional_actions)


def test_failed_invocations_go_to_the_dead_letter_queue():
    resources = template()["Resources"]
    on_failure = resources["AsyncInvokeConfig"]["Properties"]["DestinationConfig"]["OnFailure"]

    assert on_failure["Destination"] == {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}


# --- The backup bucket's abort-incomplete-uploads rule ------------------------------------------


@pytest.fixture
def lifecycle_handler(monkeypatch):
    """The template's inline custom-resource code, with cfnresponse recording its answers."""
    answers = []
    cfnresponse = types.ModuleType("cfnresponse")
    cfnresponse.SUCCESS, cfnresponse.FAILED = "SUCCESS", "FAILED"
    cfnresponse.send = lambda event, context, status, data, physical_id, reason=None: (
        answers.append((status, physical_id, reason))
    )
    monkeypatch.setitem(sys.modules, "cfnresponse", cfnresponse)
    function = template()["Resources"]["AbortIncompleteUploadsFunction"]["Properties"]
    namespace: dict = {}
    exec(compile(function["Code"]["ZipFile"], "index.py", "exec"), namespace)  # noqa: S102
    return namespace["handler"], answers


def custom_resource_event(request_type: str, **props) -> dict:
    return {
        "RequestType": request_type,
        "ResourceProperties": {
            "Bucket": "photos-bak",
            "Prefix": "backup/",
            "Days": "1",
            "RuleId": "backupsite-abort-incomplete-uploads-photos",
            **props,
        },
    }


def test_template_keeps_an_abort_incomplete_uploads_rule_on_the_backup_bucket():
    resource = template()["Resources"]["AbortIncompleteUploads"]
    assert resource["Properties"]["Bucket"] == {"Ref": "BackupBucket"}
    assert resource["Properties"]["Prefix"] == {"Ref": "BackupPrefix"}


@mock_aws
def test_the_rule_is_added_next_to_existing_rules_and_removed_alone(lifecycle_handler):
    handler, answers = lifecycle_handler
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="photos-bak")
    theirs = {
        "ID": "expire-logs",
        "Status": "Enabled",
        "Filter": {"Prefix": "logs/"},
        "Expiration": {"Days": 30},
    }
    s3.put_bucket_lifecycle_configuration(
        Bucket="photos-bak", LifecycleConfiguration={"Rules": [theirs]}
    )

    handler(custom_resource_event("Create"), None, s3=s3)
    handler(custom_resource_event("Update"), None, s3=s3)  # idempotent: still one rule of ours

    rules = s3.get_bucket_lifecycle_configuration(Bucket="photos-bak")["Rules"]
    assert [r["ID"] for r in rules] == ["expire-logs", "backupsite-abort-incomplete-uploads-photos"]
    ours = rules[1]
    assert ours["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    assert ours["Filter"] == {"Prefix": "backup/"}

    handler(custom_resource_event("Delete"), None, s3=s3)

    rules = s3.get_bucket_lifecycle_configuration(Bucket="photos-bak")["Rules"]
    assert [r["ID"] for r in rules] == ["expire-logs"]
    assert [status for status, _, _ in answers] == ["SUCCESS"] * 3


@mock_aws
def test_a_bucket_without_rules_gets_ours_and_loses_it_again(lifecycle_handler):
    handler, answers = lifecycle_handler
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="photos-bak")

    handler(custom_resource_event("Create", Prefix=""), None, s3=s3)
    assert answers[-1][0] == "SUCCESS"
    assert len(s3.get_bucket_lifecycle_configuration(Bucket="photos-bak")["Rules"]) == 1
    handler(custom_resource_event("Delete", Prefix=""), None, s3=s3)

    with pytest.raises(ClientError, match="NoSuchLifecycleConfiguration"):
        s3.get_bucket_lifecycle_configuration(Bucket="photos-bak")


@mock_aws
def test_a_missing_backup_bucket_fails_the_stack_with_the_reason(lifecycle_handler):
    handler, answers = lifecycle_handler
    s3 = boto3.client("s3", region_name="us-east-1")

    handler(custom_resource_event("Create"), None, s3=s3)
    handler(custom_resource_event("Delete"), None, s3=s3)

    (failed_status, _, reason), (deleted_status, _, _) = answers
    assert failed_status == "FAILED" and "NoSuchBucket" in reason
    assert deleted_status == "SUCCESS", "a stack being deleted must not hang on its rule"
