terraform {
  # 1.10+ for S3-native state locking (`use_lockfile`).
  required_version = ">= 1.10.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "6.66.0"
    }
    helm = {
      source  = "hashicorp/helm"
      version = "3.1.1"
    }
    # Required by the eks module (OIDC thumbprint, wait timers); pinned here so the
    # lock file resolves to exactly these versions.
    tls = {
      source  = "hashicorp/tls"
      version = "4.2.1"
    }
    time = {
      source  = "hashicorp/time"
      version = "0.13.1"
    }
  }

  # Partial configuration: bucket and region come from the bootstrap stack, e.g.
  #   terraform init -backend-config="bucket=$(terraform -chdir=bootstrap output -raw state_bucket_name)" \
  #                  -backend-config="region=us-east-1"
  backend "s3" {
    key          = "paper-classifier/prod/terraform.tfstate"
    encrypt      = true
    use_lockfile = true
  }
}
