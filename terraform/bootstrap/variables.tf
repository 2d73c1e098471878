variable "region" {
  description = "AWS region of the state bucket (use the same region as the main stack)."
  type        = string
  default     = "us-east-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.region))
    error_message = "region must look like an AWS region name, e.g. us-east-1."
  }
}

variable "project" {
  description = "Short project name, used in the bucket name and tags."
  type        = string
  default     = "paper-classifier"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}[a-z0-9]$", var.project))
    error_message = "project must be 3-32 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "state_bucket_name" {
  description = "Name of the Terraform state bucket. Empty: <project>-tfstate-<account id>-<region>."
  type        = string
  default     = ""

  validation {
    condition     = var.state_bucket_name == "" || can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.state_bucket_name))
    error_message = "state_bucket_name must be empty or a valid S3 bucket name."
  }
}

variable "noncurrent_state_retention_days" {
  description = "Days that old versions of state files are kept (for recovery from a bad apply)."
  type        = number
  default     = 90

  validation {
    condition     = var.noncurrent_state_retention_days >= 7
    error_message = "noncurrent_state_retention_days must be at least 7."
  }
}
