"""The CloudFormation template: valid for cfn-lint, and configuring the function it deploys."""

import subprocess
import sys
from pathlib import Path

from cfnlint.decode import decode

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
