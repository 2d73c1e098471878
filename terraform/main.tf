data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

# Zones are pinned by name (region + letter) so the subnet layout never changes when
# AWS adds a zone; the data source still fails the plan if one of them is unavailable.
data "aws_availability_zones" "available" {
  state = "available"

  filter {
    name   = "zone-name"
    values = [for s in var.availability_zone_suffixes : "${var.region}${s}"]
  }
}

locals {
  name       = "${var.project}-${var.environment}"
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  azs        = sort(data.aws_availability_zones.available.names)

  tags = merge(var.tags, {
    Project     = var.project
    Environment = var.environment
    ManagedBy   = "terraform"
  })

  gpu_taint = {
    key    = "nvidia.com/gpu"
    value  = "true"
    effect = "NO_SCHEDULE"
  }
}

################################################################################
# Network
################################################################################

module "vpc" {
  #checkov:skip=CKV_TF_1:Registry module pinned to an exact release; registry sources cannot be pinned by commit hash.
  source  = "terraform-aws-modules/vpc/aws"
  version = "6.6.1"

  name = local.name
  cidr = var.vpc_cidr
  azs  = local.azs

  private_subnets = [for i, _ in local.azs : cidrsubnet(var.vpc_cidr, 4, i)]
  public_subnets  = [for i, _ in local.azs : cidrsubnet(var.vpc_cidr, 8, i + 240)]

  enable_nat_gateway     = true
  single_nat_gateway     = var.single_nat_gateway
  one_nat_gateway_per_az = !var.single_nat_gateway
  enable_dns_hostnames   = true
  enable_dns_support     = true

  # The module's default security group is locked down (no rules).
  manage_default_security_group = true
  default_security_group_ingress = []
  default_security_group_egress  = []

  enable_flow_log                                 = true
  create_flow_log_cloudwatch_log_group            = true
  create_flow_log_cloudwatch_iam_role             = true
  flow_log_cloudwatch_log_group_retention_in_days = var.log_retention_days
  flow_log_max_aggregation_interval               = 60

  # Load balancers: public ones in public subnets, internal ones in private subnets.
  public_subnet_tags  = { "kubernetes.io/role/elb" = "1" }
  private_subnet_tags = { "kubernetes.io/role/internal-elb" = "1" }
}

################################################################################
# EKS
################################################################################

module "eks" {
  #checkov:skip=CKV_TF_1:Registry module pinned to an exact release; registry sources cannot be pinned by commit hash.
  source  = "terraform-aws-modules/eks/aws"
  version = "21.25.0"

  name               = local.name
  kubernetes_version = var.kubernetes_version

  vpc_id     = module.vpc.vpc_id
  subnet_ids = module.vpc.private_subnets

  # GitHub-hosted runners (release / retrain workflows) reach the API over the public
  # endpoint; access is still IAM-authenticated and limited by access entries.
  endpoint_public_access       = true
  endpoint_private_access      = true
  endpoint_public_access_cidrs = var.cluster_endpoint_public_access_cidrs

  enabled_log_types                      = ["api", "audit", "authenticator"]
  cloudwatch_log_group_retention_in_days = var.log_retention_days

  # IRSA: the module creates the cluster's IAM OIDC provider; iam.tf builds the
  # engine/trainer roles on it.
  enable_irsa = true

  authentication_mode                      = "API"
  enable_cluster_creator_admin_permissions = true

  access_entries = merge(
    {
      for i, arn in var.cluster_admin_arns : "admin-${i}" => {
        principal_arn = arn
        policy_associations = {
          admin = {
            policy_arn   = "arn:${local.partition}:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
            access_scope = { type = "cluster" }
          }
        }
      }
    },
    {
      # CI applies the prod overlay (which includes the Namespace) and runs the training
      # Job: admin on the cluster's objects through the EKS policy, no aws-auth edits.
      ci = {
        principal_arn = aws_iam_role.ci.arn
        policy_associations = {
          admin = {
            policy_arn   = "arn:${local.partition}:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
            access_scope = { type = "cluster" }
          }
        }
      }
    },
  )

  addons = {
    coredns = {}
    eks-pod-identity-agent = {
      before_compute = true
    }
    kube-proxy = {}
    vpc-cni = {
      before_compute = true
      # Enforce the NetworkPolicies of k8s/base (the VPC CNI's network policy agent).
      configuration_values = jsonencode({ enableNetworkPolicy = "true" })
    }
  }

  eks_managed_node_groups = {
    system = {
      ami_type       = "AL2023_x86_64_STANDARD"
      instance_types = var.system_instance_types
      capacity_type  = "ON_DEMAND"

      min_size     = var.system_node_count.min
      desired_size = var.system_node_count.desired
      max_size     = var.system_node_count.max

      labels = { nodegroup = "system" }
    }

    gpu = {
      # EKS-optimized AL2023 with the NVIDIA driver and container toolkit preinstalled;
      # the device plugin (addons.tf) advertises nvidia.com/gpu to the scheduler.
      ami_type       = "AL2023_x86_64_NVIDIA"
      instance_types = var.gpu_instance_types
      capacity_type  = var.gpu_capacity_type

      # The cluster autoscaler (addons.tf) owns the count between min and max: it adds a node
      # when a GPU pod is pending (KEDA adding engines, a RayJob's workers, the training Job)
      # and removes one that has stayed empty for 10 minutes. With min 0 it scales from zero
      # (it learns labels/taints of an empty group from the ASG tags in addons.tf).
      min_size     = var.gpu_min_size
      desired_size = max(var.gpu_min_size, var.gpu_desired_size)
      max_size     = var.gpu_max_size

      # k8s.amazonaws.com/accelerator marks a GPU node for the cluster autoscaler: it then treats
      # a new node as not ready until the device plugin advertises its GPU, instead of adding a
      # second node for the same pending pod meanwhile.
      labels = {
        nodegroup                       = "gpu"
        "k8s.amazonaws.com/accelerator" = "nvidia"
      }
      taints = { gpu = local.gpu_taint }

      block_device_mappings = {
        xvda = {
          device_name = "/dev/xvda"
          ebs = {
            volume_size           = var.gpu_node_disk_size_gb
            volume_type           = "gp3"
            encrypted             = true
            delete_on_termination = true
          }
        }
      }
    }
  }

  tags = local.tags
}
