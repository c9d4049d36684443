# codepipeline-exporter's events for an organization, in the monitoring account
# (docs/organization.md): the central event bus every member account's rule (../member) forwards
# CodePipeline and CloudFormation Git sync state changes to, and the SQS queue the exporter reads
# (organization.events.queue_url in its configuration), in the provider's region.

terraform {
  required_version = ">= 1.3"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0"
    }
  }
}

variable "organization_id" {
  description = "The organization whose accounts may put events on the bus (aws:PrincipalOrgID)."
  type        = string
  validation {
    condition     = can(regex("^o-[a-z0-9]{10,32}$", var.organization_id))
    error_message = "organization_id is an organization ID (o- and 10 to 32 letters or digits)."
  }
}

variable "event_bus_name" {
  description = "The central event bus's name."
  type        = string
  default     = "codepipeline-exporter"
}

variable "queue_name" {
  description = "The name of the queue, the last segment of organization.events.queue_url."
  type        = string
  default     = "codepipeline-exporter"
}

variable "exporter_role_arn" {
  description = "The IAM role the exporter runs as; when set, the queue policy also lets it receive and delete messages and read the queue's attributes."
  type        = string
  default     = ""
}

variable "forward_own_events" {
  description = "A rule on this account's default bus puts its own events of this region on the queue. Set false when the member module runs in this account and region too (its rule forwards them to the central bus already, and they would arrive twice)."
  type        = bool
  default     = true
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}

locals {
  # The two event patterns of deploy/events/terraform in one rule.
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
}

resource "aws_cloudwatch_event_bus" "central" {
  name = var.event_bus_name
  tags = var.tags
}

# Any principal of the organization may put events: the member accounts' forwarding roles.
data "aws_iam_policy_document" "bus" {
  statement {
    sid       = "OrganizationPutEvents"
    actions   = ["events:PutEvents"]
    resources = [aws_cloudwatch_event_bus.central.arn]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:PrincipalOrgID"
      values   = [var.organization_id]
    }
  }
}

resource "aws_cloudwatch_event_bus_policy" "central" {
  event_bus_name = aws_cloudwatch_event_bus.central.name
  policy         = data.aws_iam_policy_document.bus.json
}

# Messages the queue could not hand over after five receives. The exporter deletes every message it
# reads, readable or not, so this stays empty unless the exporter cannot delete.
resource "aws_sqs_queue" "dead_letter" {
  name                      = "${var.queue_name}-dlq"
  sqs_managed_sse_enabled   = true
  message_retention_seconds = 1209600
  tags                      = var.tags
}

resource "aws_sqs_queue" "events" {
  name                    = var.queue_name
  sqs_managed_sse_enabled = true
  # Four days: an exporter that is down over a weekend finds what happened, and polls anyway.
  message_retention_seconds  = 345600
  visibility_timeout_seconds = 60
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dead_letter.arn
    maxReceiveCount     = 5
  })
  tags = var.tags
}

# The members' events, each with its own account and region, on the central bus.
resource "aws_cloudwatch_event_rule" "bus" {
  name           = "${var.queue_name}-organization"
  description    = "CodePipeline and CloudFormation Git sync state changes of the organization, for codepipeline-exporter."
  event_bus_name = aws_cloudwatch_event_bus.central.name
  event_pattern  = local.event_pattern
  tags           = var.tags
}

resource "aws_cloudwatch_event_target" "bus" {
  rule           = aws_cloudwatch_event_rule.bus.name
  event_bus_name = aws_cloudwatch_event_bus.central.name
  target_id      = "codepipeline-exporter"
  arn            = aws_sqs_queue.events.arn
}

# This account's own events of this region, from its default bus straight to the queue: a
# same-account queue target needs no role, only the queue policy below. Its other regions forward
# to the central bus with the member module or with deploy/events/terraform's
# forward_to_event_bus_arn.
resource "aws_cloudwatch_event_rule" "own_account" {
  count         = var.forward_own_events ? 1 : 0
  name          = "${var.queue_name}-own-account"
  description   = "The monitoring account's CodePipeline and CloudFormation Git sync state changes, for codepipeline-exporter."
  event_pattern = local.event_pattern
  tags          = var.tags
}

resource "aws_cloudwatch_event_target" "own_account" {
  count     = var.forward_own_events ? 1 : 0
  rule      = aws_cloudwatch_event_rule.own_account[0].name
  target_id = "codepipeline-exporter"
  arn       = aws_sqs_queue.events.arn
}

data "aws_iam_policy_document" "queue" {
  statement {
    sid       = "EventBridgeRulesSend"
    effect    = "Allow"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.events.arn]
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }
    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = concat([aws_cloudwatch_event_rule.bus.arn], aws_cloudwatch_event_rule.own_account[*].arn)
    }
  }

  dynamic "statement" {
    for_each = var.exporter_role_arn == "" ? [] : [var.exporter_role_arn]
    content {
      sid       = "ExporterReads"
      effect    = "Allow"
      actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"]
      resources = [aws_sqs_queue.events.arn]
      principals {
        type        = "AWS"
        identifiers = [statement.value]
      }
    }
  }
}

resource "aws_sqs_queue_policy" "events" {
  queue_url = aws_sqs_queue.events.id
  policy    = data.aws_iam_policy_document.queue.json
}

output "queue_url" {
  description = "organization.events.queue_url in the exporter's configuration."
  value       = aws_sqs_queue.events.url
}

output "queue_arn" {
  description = "The queue's ARN, for the exporter role's policy."
  value       = aws_sqs_queue.events.arn
}

output "event_bus_arn" {
  description = "The central event bus, the member module's central_event_bus_arn."
  value       = aws_cloudwatch_event_bus.central.arn
}
