variable "region" {
  description = "AWS region for every resource of this stack."
  type        = string
  default     = "us-east-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.region))
    error_message = "region must look like an AWS region name, e.g. us-east-1."
  }
}

variable "project" {
  description = "Short project name, used as a prefix for resource names and as a tag."
  type        = string
  default     = "paper-classifier"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}[a-z0-9]$", var.project))
    error_message = "project must be 3-32 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "environment" {
  description = "Deployment environment name (tag and name suffix)."
  type        = string
  default     = "prod"

  validation {
    condition     = contains(["dev", "staging", "prod"], var.environment)
    error_message = "environment must be one of dev, staging, prod."
  }
}

variable "kubernetes_version" {
  description = "EKS Kubernetes <major>.<minor> version."
  type        = string
  default     = "1.34"

  validation {
    condition     = can(regex("^1\\.[0-9]{2}$", var.kubernetes_version))
    error_message = "kubernetes_version must be <major>.<minor>, e.g. 1.34."
  }
}

variable "vpc_cidr" {
  description = "CIDR block of the VPC; split into 3 private and 3 public subnets."
  type        = string
  default     = "10.40.0.0/16"

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0)) && tonumber(split("/", var.vpc_cidr)[1]) <= 20
    error_message = "vpc_cidr must be a valid IPv4 CIDR of /20 or larger."
  }
}

variable "availability_zone_suffixes" {
  description = "Zone letters used in the region (one private and one public subnet each), e.g. [\"a\", \"b\", \"c\"]."
  type        = list(string)
  default     = ["a", "b", "c"]

  validation {
    condition     = length(var.availability_zone_suffixes) >= 2 && length(var.availability_zone_suffixes) <= 4 && alltrue([for s in var.availability_zone_suffixes : can(regex("^[a-z]$", s))])
    error_message = "availability_zone_suffixes must list 2 to 4 single zone letters."
  }
}

variable "single_nat_gateway" {
  description = "Use one shared NAT gateway (cheaper) instead of one per availability zone (HA)."
  type        = bool
  default     = true
}

variable "cluster_endpoint_public_access_cidrs" {
  description = "CIDR blocks allowed to reach the public EKS API endpoint (GitHub-hosted runners and operators)."
  type        = list(string)
  default     = ["0.0.0.0/0"]

  validation {
    condition     = length(var.cluster_endpoint_public_access_cidrs) > 0 && alltrue([for c in var.cluster_endpoint_public_access_cidrs : can(cidrhost(c, 0))])
    error_message = "cluster_endpoint_public_access_cidrs must be a non-empty list of valid CIDR blocks."
  }
}

variable "cluster_admin_arns" {
  description = "IAM principal ARNs (users or roles) granted cluster-admin through EKS access entries, besides the identity that runs terraform apply."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for a in var.cluster_admin_arns : can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:(user|role)/.+$", a))])
    error_message = "cluster_admin_arns must contain IAM user or role ARNs."
  }
}

variable "system_instance_types" {
  description = "Instance types of the system node group (gateway, CoreDNS, controllers, CPU engine)."
  type        = list(string)
  default     = ["m6i.large"]

  validation {
    condition     = length(var.system_instance_types) > 0
    error_message = "system_instance_types must not be empty."
  }
}

variable "system_node_count" {
  description = "Min/desired/max size of the system node group."
  type = object({
    min     = number
    desired = number
    max     = number
  })
  default = { min = 2, desired = 2, max = 4 }

  validation {
    condition     = var.system_node_count.min >= 1 && var.system_node_count.min <= var.system_node_count.desired && var.system_node_count.desired <= var.system_node_count.max
    error_message = "system_node_count must satisfy 1 <= min <= desired <= max."
  }
}

variable "gpu_instance_types" {
  description = "Instance types of the GPU node group (one NVIDIA GPU each is what the engine requests). Each must hold the largest GPU pod's CPU and memory requests (the engine, the corpus Ray worker: 4 vCPU, 16 GiB; the trainer: 4 vCPU, 24 GiB), or the cluster autoscaler never adds a node for it: g5.2xlarge (8 vCPU, 32 GiB, one A10G) does, g5.xlarge (4 vCPU, 16 GiB) does not."
  type        = list(string)
  default     = ["g5.2xlarge"]

  validation {
    condition     = length(var.gpu_instance_types) > 0 && alltrue([for t in var.gpu_instance_types : can(regex("^(g[4-6][a-z]*|p[3-5][a-z]*)\\.", t))])
    error_message = "gpu_instance_types must be NVIDIA GPU instance families (g4dn, g5, g6, p3, p4d, p5, ...)."
  }
}

variable "gpu_min_size" {
  description = "Fewest GPU nodes the cluster autoscaler keeps. 0 lets the group scale to zero when no GPU pod runs (the engines' ScaledObject keeps at least 2 engines, so in practice 2 nodes stay while the service is deployed)."
  type        = number
  default     = 0

  validation {
    condition     = var.gpu_min_size >= 0 && var.gpu_min_size <= var.gpu_max_size
    error_message = "gpu_min_size must be between 0 and gpu_max_size."
  }
}

variable "gpu_desired_size" {
  description = "Initial number of GPU nodes (raised to gpu_min_size if lower). 0 scales from zero (the cluster autoscaler adds a node when a GPU pod is pending); 1 keeps one warm. Changes after creation are ignored by the module (the autoscaler owns the count)."
  type        = number
  default     = 1

  validation {
    condition     = contains([0, 1], var.gpu_desired_size)
    error_message = "gpu_desired_size must be 0 or 1."
  }
}

variable "gpu_max_size" {
  description = "Maximum number of GPU nodes the autoscaler may run, one GPU pod each: room for the engines' ScaledObject maximum (6) plus one rollout surge, the corpus RayJob's GPU workers (2) and the training Job (1)."
  type        = number
  default     = 10

  validation {
    condition     = var.gpu_max_size >= 1 && var.gpu_max_size <= 50
    error_message = "gpu_max_size must be between 1 and 50."
  }
}

variable "gpu_capacity_type" {
  description = "ON_DEMAND or SPOT capacity for the GPU node group."
  type        = string
  default     = "ON_DEMAND"

  validation {
    condition     = contains(["ON_DEMAND", "SPOT"], var.gpu_capacity_type)
    error_message = "gpu_capacity_type must be ON_DEMAND or SPOT."
  }
}

variable "gpu_node_disk_size_gb" {
  description = "Root volume size (GiB) of GPU nodes: the engine image with CUDA and vLLM is large, and model weights are cached on the node."
  type        = number
  default     = 150

  validation {
    condition     = var.gpu_node_disk_size_gb >= 50
    error_message = "gpu_node_disk_size_gb must be at least 50."
  }
}

variable "nvidia_device_plugin_chart_version" {
  description = "Exact version of the nvidia-device-plugin Helm chart."
  type        = string
  default     = "0.18.2"

  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+$", var.nvidia_device_plugin_chart_version))
    error_message = "nvidia_device_plugin_chart_version must be an exact x.y.z version."
  }
}

variable "enable_cluster_autoscaler" {
  description = "Install the Kubernetes cluster autoscaler (needed for the GPU node group to scale from and to zero)."
  type        = bool
  default     = true
}

variable "cluster_autoscaler_chart_version" {
  description = "Exact version of the cluster-autoscaler Helm chart (its app version should match kubernetes_version)."
  type        = string
  default     = "9.53.0"

  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+$", var.cluster_autoscaler_chart_version))
    error_message = "cluster_autoscaler_chart_version must be an exact x.y.z version."
  }
}

variable "k8s_namespace" {
  description = "Kubernetes namespace of the application (must match k8s/base)."
  type        = string
  default     = "paper-classifier"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", var.k8s_namespace))
    error_message = "k8s_namespace must be a valid DNS-1123 label."
  }
}

variable "model_reader_service_accounts" {
  description = "Kubernetes service accounts whose fetch-model init containers read model versions (engine, gateway); they share the role of output engine_role_arn."
  type        = list(string)
  default     = ["engine", "gateway"]

  validation {
    condition     = length(var.model_reader_service_accounts) > 0 && alltrue([for sa in var.model_reader_service_accounts : can(regex("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", sa))])
    error_message = "model_reader_service_accounts must be non-empty DNS-1123 names."
  }
}

variable "trainer_service_account" {
  description = "Name of the training Job's Kubernetes service account (publishes model versions)."
  type        = string
  default     = "trainer"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", var.trainer_service_account))
    error_message = "trainer_service_account must be a DNS-1123 name."
  }
}

variable "corpus_service_account" {
  description = "Name of the corpus RayJob's Kubernetes service account (k8s/corpus: reads models and its input, writes its output)."
  type        = string
  default     = "corpus"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", var.corpus_service_account))
    error_message = "corpus_service_account must be a DNS-1123 name."
  }
}

variable "corpus_input_prefix" {
  description = "Key prefix in the model bucket that the corpus RayJob may read its papers from (k8s/corpus/corpus.env SOURCE_PREFIX lies under it)."
  type        = string
  default     = "corpus/input/"

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9._/-]*/$", var.corpus_input_prefix)) && !startswith(var.corpus_input_prefix, "models/")
    error_message = "corpus_input_prefix must be a key prefix ending in '/', outside models/."
  }
}

variable "corpus_output_prefix" {
  description = "Key prefix in the model bucket that the corpus RayJob may write its answers to (k8s/corpus/corpus.env OUT_PREFIX lies under it)."
  type        = string
  default     = "corpus/output/"

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9._/-]*/$", var.corpus_output_prefix)) && !startswith(var.corpus_output_prefix, "models/") && !startswith(var.corpus_output_prefix, var.corpus_input_prefix) && !startswith(var.corpus_input_prefix, var.corpus_output_prefix)
    error_message = "corpus_output_prefix must be a key prefix ending in '/', outside models/ and not overlapping corpus_input_prefix."
  }
}

variable "model_bucket_name" {
  description = "Name of the model-version bucket. Empty: <project>-models-<account id>-<region>."
  type        = string
  default     = ""

  validation {
    condition     = var.model_bucket_name == "" || can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.model_bucket_name))
    error_message = "model_bucket_name must be empty or a valid S3 bucket name."
  }
}

variable "noncurrent_version_retention_days" {
  description = "Days after which noncurrent (overwritten or deleted) object versions in the model bucket expire."
  type        = number
  default     = 30

  validation {
    condition     = var.noncurrent_version_retention_days >= 1
    error_message = "noncurrent_version_retention_days must be at least 1."
  }
}

variable "ecr_repositories" {
  description = "ECR repositories to create, one per Dockerfile target."
  type        = list(string)
  default     = ["gateway", "engine", "engine-cpu", "trainer"]

  validation {
    condition     = length(var.ecr_repositories) > 0 && alltrue([for r in var.ecr_repositories : can(regex("^[a-z0-9][a-z0-9-]*$", r))])
    error_message = "ecr_repositories must be non-empty lowercase names."
  }
}

variable "ecr_keep_images" {
  description = "Number of most recent images kept per ECR repository (older ones expire)."
  type        = number
  default     = 30

  validation {
    condition     = var.ecr_keep_images >= 5
    error_message = "ecr_keep_images must be at least 5 so rollbacks stay possible."
  }
}

variable "github_repository" {
  description = "GitHub repository allowed to assume the CI role, as owner/name."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", var.github_repository))
    error_message = "github_repository must be owner/name."
  }
}

variable "github_allowed_subjects" {
  description = "OIDC subject patterns (after repo:<owner>/<name>:) that may assume the CI role: the main branch (retrain) and version tags (release)."
  type        = list(string)
  default     = ["ref:refs/heads/main", "ref:refs/tags/v*"]

  validation {
    condition     = length(var.github_allowed_subjects) > 0 && alltrue([for s in var.github_allowed_subjects : !contains(["*", "ref:*"], s)])
    error_message = "github_allowed_subjects must be non-empty and must not be a bare wildcard."
  }
}

variable "create_github_oidc_provider" {
  description = "Create the account's GitHub Actions OIDC provider (false when the account already has one)."
  type        = bool
  default     = true
}

variable "log_retention_days" {
  description = "Retention of the EKS control-plane and VPC flow log groups."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a CloudWatch Logs retention value."
  }
}

variable "tags" {
  description = "Extra tags added to every resource."
  type        = map(string)
  default     = {}
}

variable "enable_external_secrets" {
  description = "Install the External Secrets Operator and the ClusterSecretStore aws-secrets-manager (k8s/overlays/prod syncs the API keys through it)."
  type        = bool
  default     = true
}

variable "external_secrets_chart_version" {
  description = "Exact version of the external-secrets Helm chart (must serve the external-secrets.io/v1 API)."
  type        = string
  default     = "2.10.0"

  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+$", var.external_secrets_chart_version))
    error_message = "external_secrets_chart_version must be an exact x.y.z version."
  }
}

variable "enable_ingress_nginx" {
  description = "Install ingress-nginx (IngressClass nginx, used by the gateway's Ingress) behind an internet-facing NLB."
  type        = bool
  default     = true
}

variable "ingress_nginx_chart_version" {
  description = "Exact version of the ingress-nginx Helm chart."
  type        = string
  default     = "4.14.2"

  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+$", var.ingress_nginx_chart_version))
    error_message = "ingress_nginx_chart_version must be an exact x.y.z version."
  }
}

variable "enable_monitoring" {
  description = "Install kube-prometheus-stack (Prometheus operator CRDs for k8s/monitoring, Prometheus, Alertmanager, Grafana) in namespace monitoring."
  type        = bool
  default     = true
}

variable "kube_prometheus_stack_chart_version" {
  description = "Exact version of the kube-prometheus-stack Helm chart."
  type        = string
  default     = "88.6.2"

  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+$", var.kube_prometheus_stack_chart_version))
    error_message = "kube_prometheus_stack_chart_version must be an exact x.y.z version."
  }
}

variable "enable_keda" {
  description = "Install KEDA: it scales the engine Deployment on the vLLM queue (k8s/overlays/prod/engine-scaledobject.yaml needs its keda.sh CRDs)."
  type        = bool
  default     = true
}

variable "keda_chart_version" {
  description = "Exact version of the keda Helm chart."
  type        = string
  default     = "2.18.0"

  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+$", var.keda_chart_version))
    error_message = "keda_chart_version must be an exact x.y.z version."
  }
}

variable "enable_kuberay" {
  description = "Install the KubeRay operator (the ray.io CRDs and the controller that runs k8s/corpus's RayJob)."
  type        = bool
  default     = true
}

variable "kuberay_operator_chart_version" {
  description = "Exact version of the kuberay-operator Helm chart (the operator serves the ray.io/v1 RayJob API)."
  type        = string
  default     = "1.5.0"

  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+$", var.kuberay_operator_chart_version))
    error_message = "kuberay_operator_chart_version must be an exact x.y.z version."
  }
}
