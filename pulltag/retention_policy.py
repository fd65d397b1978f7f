"""`pulltag retention policy REGISTRY`: the registry's own retention rule that keeps every image carrying
pulltag's prefix, with that registry's caveats. Pure text from the configured prefix."""

from __future__ import annotations

import json

REGISTRIES = ("harbor", "ecr", "gar", "gitlab", "acr")


def _harbor(prefix: str) -> str:
    rule = {
        "algorithm": "or",
        "rules": [
            {
                "action": "retain",
                "template": "always",
                "params": {},
                "tag_selectors": [
                    {
                        "kind": "doublestar",
                        "decoration": "matches",
                        "pattern": f"{prefix}*",
                        "extras": json.dumps({"untagged": False}),
                    }
                ],
                "scope_selectors": {
                    "repository": [{"kind": "doublestar", "decoration": "repoMatches", "pattern": "**"}]
                },
            }
        ],
        "trigger": {"kind": "Schedule", "settings": {"cron": "0 0 0 * * *"}},
        "scope": {"level": "project", "ref": "<project id>"},
    }
    return f"""\
Harbor: a tag retention rule per project (Project > Policy > Tag Retention > Add rule):
  For the repositories matching **, retain always the artifacts with tags matching {prefix}*
As the API body (POST /api/v2.0/retentions, or add the rule to the project's existing policy):
{json.dumps(rule, indent=2)}
Caveats:
- Rules are OR'ed: an artifact any rule retains is kept, so add this rule next to your own.
- At most 15 rules per project.
- Immutability beats retention: an immutable tag is never deleted, by retention or by pulltag
  (pulltag records it as `immutable` and keeps it).
- "pulled within the last N days" does not protect what runs: a node that has the image never pulls it
  again, and a HEAD is not a pull. pulltag's tags are what protects those.
- {prefix}* also matches tags made by hand that start with the prefix.
"""


def _ecr(prefix: str) -> str:
    policy = {
        "rules": [
            {
                "rulePriority": 1,
                "description": f"keep images pulltag tagged {prefix}* (what runs or ran recently)",
                "selection": {
                    "tagStatus": "tagged",
                    "tagPrefixList": [prefix],
                    "countType": "imageCountMoreThan",
                    "countNumber": 9999,
                },
                "action": {"type": "expire"},
            }
        ]
    }
    return f"""\
Amazon ECR: a lifecycle policy whose top-priority rule selects the images tagged {prefix}*
(aws ecr put-lifecycle-policy --repository-name REPO --lifecycle-policy-text file://policy.json):
{json.dumps(policy, indent=2)}
Put your own expiry rules after it (rulePriority 2 and up).
Caveats:
- ECR rules only expire; an image a higher-priority rule selects cannot be expired by a lower-priority
  rule, which is what makes this rule a "keep". It must stay rule 1.
- countNumber must stay above the number of {prefix}* images the repository holds; pulltag's own
  retention (retention.keep_last, retention.grace_hours) keeps that number small.
- ECR refuses more than 1,000 tags per image: with tagging.scope namespace or every, a busy digest
  collects one tag per namespace or pod; turn pulltag's retention on so old ones are released.
- tagPrefixList also matches tags made by hand that start with {prefix}.
"""


def _gar(prefix: str) -> str:
    policy = [
        {
            "name": "keep-pulltag",
            "action": {"type": "Keep"},
            "condition": {"tagState": "tagged", "tagPrefixes": [prefix]},
        }
    ]
    return f"""\
Google Artifact Registry: a Keep cleanup policy with tagPrefixes
(gcloud artifacts repositories set-cleanup-policies REPO --location=LOCATION --policy=policy.json):
{json.dumps(policy, indent=2)}
Caveats:
- Keep policies win over Delete policies: an image matching this one is never cleaned up.
- Cleanup policies are per repository; try them with --dry-run first.
- tagPrefixes also matches tags made by hand that start with {prefix}.
"""


def _gitlab(prefix: str) -> str:
    attributes = {
        "container_expiration_policy_attributes": {
            "enabled": True,
            "cadence": "1d",
            "keep_n": 10,
            "older_than": "90d",
            "name_regex": ".*",
            "name_regex_keep": f"{prefix}.*",
        }
    }
    return f"""\
GitLab: the project's cleanup policy for image tags, with name_regex_keep
(Settings > Packages and registries > Clean up image tags, or PUT /api/v4/projects/:id):
{json.dumps(attributes, indent=2)}
Caveats:
- name_regex_keep wins over name_regex: a tag matching it is never removed. The regex (RE2) must match
  the whole tag name.
- The policy deletes tags; an image loses its storage only when no tag is left and garbage collection
  runs.
- Each run deletes a limited number of tags; a large backlog takes several runs.
- {prefix}.* also matches tags made by hand that start with {prefix}.
"""


def _acr(prefix: str) -> str:
    return f"""\
Azure Container Registry: its retention policy only purges untagged manifests
(az acr config retention update --registry REGISTRY --status enabled --days 7 --type UntaggedManifests),
so any tag, {prefix}* included, already protects an image: there is no rule to add for pulltag.
Caveats:
- `acr purge` (az acr run --cmd "acr purge --filter 'REPO:REGEX' --ago 30d" /dev/null) deletes every
  tag its --filter regex matches: write a filter that matches only your build tags, never {prefix}*
  (the regex has no negative lookahead, so "everything but {prefix}" cannot be written as one filter).
- `acr purge --untagged` deletes manifests left without tags, including one whose last {prefix}* tag
  pulltag released (pulltag releases a tag only when nothing runs the digest).
- A locked image (az acr repository update --write-enabled false) is kept; pulltag then cannot
  release its tag either.
"""


_TEXTS = {"harbor": _harbor, "ecr": _ecr, "gar": _gar, "gitlab": _gitlab, "acr": _acr}


def policy_text(registry: str, prefix: str) -> str:
    """The rule for `registry` (one of REGISTRIES) keeping everything tagged with `prefix`."""
    return _TEXTS[registry](prefix)
