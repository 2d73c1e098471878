terraform {
  required_version = ">= 1.10.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "6.66.0"
    }
  }

  # This stack creates the remote-state bucket, so its own state starts local
  # (terraform.tfstate in this folder). After the first apply it can be moved into the
  # bucket it created with `terraform init -migrate-state` and a backend "s3" block.
}

provider "aws" {
  region = var.region

  default_tags {
    tags = {
      Project   = var.project
      ManagedBy = "terraform"
      Stack     = "bootstrap"
    }
  }
}
