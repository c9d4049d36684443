# codepipeline-exporter in a member account of an organization (docs/organization.md): the
# read-only role the exporter assumes, and a rule that forwards the CodePipeline and CloudFormation
# Git sync state changes of the provider's region to the monitoring account's central event bus
# (../central). Terraform has no StackSet auto-deployment: apply the module in every member account
# and every region the exporter polls (a provider per account and region, or your account vending),
# with create_role = true in exactly one region of each account, since IAM is global.

terraform {
  required_version = ">= 1.3"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0"
    }
  }
}

variable "exporter_role_arn" {
  description = "The role the exporter runs as in the monitoring account, which assumes role_name here. It must exist first: IAM refuses a trust policy naming an unknown role."
  type        = string
  validation {
    condition     = can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]+$", var.exporter_role_arn))
    error_message = "exporter_role_arn is an IAM role ARN."
  }
}

variable "external_id" {
  description = "When not empty, the exporter must give it (organization.external_id) to assume the role."
  type        = string
  default     = ""
}

variable "role_name" {
  description = "The read-only role's name, organization.role_name in the exporter's configuration."
  type        = string
  default     = "codepipeline-exporter"
}

variable "create_role" {
  description = "Create the read-only role: true in exactly one region of the account, false in the others."
  type        = bool
  default     = true
}

variable "central_event_bus_arn" {
  description = "The central event bus in the monitoring account, the central module's event_bus_arn output."
  type        = string
  validation {
    condition     = can(regex("^arn:aws[a-z-]*:events:[a-z0-9-]+:[0-9]{12}:event-bus/[A-Za-z0-9._/-]+$", var.central_event_bus_arn))
    error_message = "central_event_bus_arn is an event bus ARN."
  }
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}

locals {
  # The partition of the account (aws, aws-cn, aws-us-gov): the exporter's role is in the same one.
  partition = split(":", var.exporter_role_arn)[1]
}

data "aws_iam_policy_document" "read_only_trust" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "AWS"
      identifiers = [var.exporter_role_arn]
    }
    dynamic "condition" {
      for_each = var.external_id == "" ? [] : [var.external_id]
      content {
        test     = "StringEquals"
        variable = "sts:ExternalId"
        values   = [condition.value]
      }
    }
  }
}

# What the exporter reads here: the actions of deploy/iam-policy.json's CodePipeline, CodeBuild
# and CodeConnections statements, and the pipelines' tags. No SQS: the queue is in the monitoring
# account.
data "aws_iam_policy_document" "read_only" {
  # checkov:skip=CKV_AWS_356:The exporter reads every pipeline, run and sync of the account (its configuration selects what it reports), as deploy/iam-policy.json grants; these actions only read.
  statement {
    sid = "CodePipelineReadOnly"
    actions = [
      "codepipeline:GetPipeline",
      "codepipeline:GetPipelineExecution",
      "codepipeline:GetPipelineState",
      "codepipeline:ListActionExecutions",
      "codepipeline:ListPipelineExecutions",
      "codepipeline:ListPipelines",
      "codepipeline:ListRuleExecutions",
      "codepipeline:ListTagsForResource",
    ]
    resources = ["*"]
  }
  # The phases of the builds of CodeBuild and Commands actions: their wait for capacity. Narrow it
  # to the pipelines' build projects if you like.
  statement {
    sid       = "CodeBuildBuildsRead"
    actions   = ["codebuild:BatchGetBuilds"]
    resources = ["arn:${local.partition}:codebuild:*:*:project/*"]
  }
  statement {
    sid = "CodeConnectionsGitSyncReadOnly"
    actions = [
      "codeconnections:GetRepositorySyncStatus",
      "codeconnections:GetResourceSyncStatus",
      "codeconnections:GetSyncBlockerSummary",
      "codeconnections:ListConnections",
      "codeconnections:ListHosts",
      "codeconnections:ListRepositoryLinks",
      "codeconnections:ListSyncConfigurations",
    ]
    resources = ["*"]
  }
}

resource "aws_iam_role" "read_only" {
  count              = var.create_role ? 1 : 0
  name               = var.role_name
  description        = "Read-only access for codepipeline-exporter in the monitoring account."
  assume_role_policy = data.aws_iam_policy_document.read_only_trust.json
  tags               = var.tags
}

resource "aws_iam_role_policy" "read_only" {
  count  = var.create_role ? 1 : 0
  name   = "codepipeline-exporter-read-only"
  role   = aws_iam_role.read_only[0].id
  policy = data.aws_iam_policy_document.read_only.json
}

# The role EventBridge assumes to put events on the central bus. The bus grants PutEvents to the
# organization (aws:PrincipalOrgID), and a target on such a bus must name a role. One role per
# region, from a name prefix: each region stands alone and the regions never clash on the global
# name.
data "aws_iam_policy_document" "forward_trust" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "forward" {
  statement {
    actions   = ["events:PutEvents"]
    resources = [var.central_event_bus_arn]
  }
}

resource "aws_iam_role" "forward" {
  name_prefix        = "codepipeline-exporter-fwd-"
  description        = "Lets the codepipeline-exporter rule forward events to the central event bus."
  assume_role_policy = data.aws_iam_policy_document.forward_trust.json
  tags               = var.tags
}

resource "aws_iam_role_policy" "forward" {
  name   = "put-events"
  role   = aws_iam_role.forward.id
  policy = data.aws_iam_policy_document.forward.json
}

# The two event patterns of deploy/events/terraform in one rule.
resource "aws_cloudwatch_event_rule" "forward" {
  name        = "codepipeline-exporter-forward"
  description = "CodePipeline and CloudFormation Git sync state changes, to codepipeline-exporter's central event bus."
  event_pattern = jsonencode({
    "$or" = [
      {
        source = ["aws.codepipeline"]
        "detail-type" = [
          "CodePipeline Pipeline Execution State Change",
          "CodePipeline Stage Execution State Change",
          "CodePipeline Action Execution State Change",
        ]
      },
      {
        source = ["aws.codeconnections"]
        "detail-type" = [
          "Git Sync Repository Sync Status Change",
          "Git Sync Resource Sync Status Change",
        ]
      },
    ]
  })
  tags = var.tags
}

resource "aws_cloudwatch_event_target" "forward" {
  rule      = aws_cloudwatch_event_rule.forward.name
  target_id = "codepipeline-exporter"
  arn       = var.central_event_bus_arn
  role_arn  = aws_iam_role.forward.arn
}

output "read_only_role_arn" {
  description = "The role the exporter assumes in this account; null where create_role is false."
  value       = one(aws_iam_role.read_only[*].arn)
}
