#!/usr/bin/env bash
# Builds an EBS snapshot of a Bottlerocket data volume (/dev/xvdb) that holds the given images
# already pulled, for gpuNodeGroups[].dataVolumeSnapshotId (docs/capacity.md). It launches one
# instance of the Bottlerocket NVIDIA AMI for the cluster's Kubernetes version, pulls each image
# into containerd's k8s.io namespace (the one the kubelet uses) through SSM, stops the instance,
# snapshots its data volume, terminates the instance and prints the snapshot id.
#
# The steps are those AWS documents for Bottlerocket data volume caches
# (https://aws.amazon.com/blogs/containers/reduce-container-startup-time-on-amazon-eks-with-bottlerocket-data-volume/).
# Needs the AWS CLI v2 with credentials that may run, stop and terminate instances, create
# snapshots, send SSM commands and (for ECR images) get an ECR login password.
set -euo pipefail

usage() {
  cat >&2 <<'EOF'
usage: build-image-cache-snapshot.sh -k KUBERNETES_VERSION -s SUBNET_ID -g SECURITY_GROUP_ID
                                     -p INSTANCE_PROFILE [-r REGION] [-t INSTANCE_TYPE]
                                     [-v VOLUME_GIB] IMAGE...

  -k  the cluster's Kubernetes version (cluster.kubernetesVersion), e.g. 1.35
  -s  a subnet with a route to SSM, ECR and the images' registries (a private subnet of the cluster)
  -g  a security group that allows outbound HTTPS (e.g. the cluster's node security group; the
      VPC's default group of a VPC this project made has no rules)
  -p  an instance profile whose role has AmazonSSMManagedInstanceCore
  -r  the region (default: $AWS_REGION, then $AWS_DEFAULT_REGION)
  -t  the instance type (default g4dn.xlarge, the smallest NVIDIA GPU instance: the NVIDIA variant
      is reported not to come up on instances without one)
  -v  the data volume's size in GiB (default 100); the node groups' diskSizeGiB must be at least this
  IMAGE  image references as the pods use them, e.g. with images.pullThroughCache
         123456789012.dkr.ecr.us-east-1.amazonaws.com/<cluster>/ghcr/huggingface/text-generation-inference:3.3.7

Prints the snapshot id (snap-...) on standard output; progress goes to standard error.
EOF
  exit 2
}

log() { printf '%s %s\n' "$(date -u +%H:%M:%SZ)" "$*" >&2; }
fail() { log "error: $*"; exit 1; }

k8s="" subnet="" profile="" region="${AWS_REGION:-${AWS_DEFAULT_REGION:-}}"
instance_type="g4dn.xlarge" volume_gib=100 security_group=""
while getopts ":k:s:p:r:t:v:g:h" opt; do
  case "$opt" in
    k) k8s="$OPTARG" ;;
    s) subnet="$OPTARG" ;;
    p) profile="$OPTARG" ;;
    r) region="$OPTARG" ;;
    t) instance_type="$OPTARG" ;;
    v) volume_gib="$OPTARG" ;;
    g) security_group="$OPTARG" ;;
    *) usage ;;
  esac
done
shift $((OPTIND - 1))
images=("$@")

[[ -n "$k8s" && -n "$subnet" && -n "$security_group" && -n "$profile" && ${#images[@]} -gt 0 ]] || usage
[[ -n "$region" ]] || { echo "error: no region: pass -r or set AWS_REGION" >&2; exit 2; }
[[ "$k8s" =~ ^1\.[0-9]+$ ]] || { echo "error: -k $k8s is not a Kubernetes minor version, e.g. 1.35" >&2; exit 2; }
[[ "$volume_gib" =~ ^[0-9]+$ ]] || { echo "error: -v $volume_gib is not a size in GiB" >&2; exit 2; }
for image in "${images[@]}"; do
  # The references go into a shell command on the instance: letters, digits and . _ - / : @ only.
  [[ "$image" =~ ^[a-z0-9][a-z0-9._/:@-]*$ ]] || { echo "error: $image is not an image reference" >&2; exit 2; }
done

export AWS_REGION="$region"
instance=""
cleanup() {
  if [[ -n "$instance" ]]; then
    log "terminating $instance"
    aws ec2 terminate-instances --instance-ids "$instance" >/dev/null || log "terminate $instance by hand"
  fi
}
trap cleanup EXIT

# Runs a command on the host of the instance (the admin container's sheltie) and waits for it.
on_host() {
  local command_id status
  command_id=$(aws ssm send-command --instance-ids "$instance" --document-name AWS-RunShellScript \
    --parameters "{\"commands\":[\"apiclient exec admin sheltie $1\"],\"executionTimeout\":[\"3600\"]}" \
    --query Command.CommandId --output text)
  while true; do
    status=$(aws ssm get-command-invocation --command-id "$command_id" --instance-id "$instance" \
      --query Status --output text 2>/dev/null || echo Pending)
    case "$status" in
      Success) return 0 ;;
      Failed | Cancelled | TimedOut) fail "$status on the instance: ${1%% -u *}" ;;
    esac
    sleep 10
  done
}

ami=$(aws ssm get-parameter --name "/aws/service/bottlerocket/aws-k8s-${k8s}-nvidia/x86_64/latest/image_id" \
  --query Parameter.Value --output text)
log "launching $ami (Bottlerocket aws-k8s-${k8s}-nvidia) as $instance_type"
user_data=$'[settings.host-containers.admin]\nenabled = true\n'
instance=$(aws ec2 run-instances --image-id "$ami" --instance-type "$instance_type" --count 1 \
  --subnet-id "$subnet" --security-group-ids "$security_group" \
  --iam-instance-profile "Name=$profile" \
  --metadata-options "HttpEndpoint=enabled,HttpTokens=required,HttpPutResponseHopLimit=1" \
  --block-device-mappings "DeviceName=/dev/xvda,Ebs={Encrypted=true,DeleteOnTermination=true}" \
  "DeviceName=/dev/xvdb,Ebs={VolumeSize=${volume_gib},VolumeType=gp3,Encrypted=true,DeleteOnTermination=true}" \
  --user-data "$user_data" \
  --tag-specifications "ResourceType=instance,Tags=[{Key=Name,Value=image-cache-snapshot-builder}]" \
  "ResourceType=volume,Tags=[{Key=Name,Value=image-cache-snapshot-builder}]" \
  --query 'Instances[0].InstanceId' --output text)
aws ec2 wait instance-running --instance-ids "$instance"

log "waiting for $instance to come online in SSM"
for _ in $(seq 60); do
  ping=$(aws ssm describe-instance-information --filters "Key=InstanceIds,Values=$instance" \
    --query 'InstanceInformationList[0].PingStatus' --output text)
  [[ "$ping" == Online ]] && break
  sleep 10
done
[[ "$ping" == Online ]] || fail "$instance did not come online in SSM (does the subnet reach SSM?)"

# Nothing may use or collect the images while they are pulled.
on_host "systemctl stop kubelet"
for image in "${images[@]}"; do
  auth=""
  if [[ "$image" =~ ^[0-9]{12}\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?/ ]]; then
    auth=" -u AWS:$(aws ecr get-login-password --region "${BASH_REMATCH[1]}")"
  fi
  log "pulling $image"
  # The label marks the image as the CRI plugin's, so the kubelet sees it (containerd/containerd#7944).
  on_host "ctr -a /run/containerd/containerd.sock -n k8s.io images pull --platform linux/amd64 --label io.cri-containerd.image=managed${auth} $image"
done

log "stopping $instance"
aws ec2 stop-instances --instance-ids "$instance" >/dev/null
aws ec2 wait instance-stopped --instance-ids "$instance"
volume=$(aws ec2 describe-instances --instance-ids "$instance" \
  --query "Reservations[0].Instances[0].BlockDeviceMappings[?DeviceName=='/dev/xvdb'].Ebs.VolumeId" --output text)
[[ "$volume" == vol-* ]] || fail "no data volume /dev/xvdb on $instance"
snapshot=$(aws ec2 create-snapshot --volume-id "$volume" \
  --description "Bottlerocket aws-k8s-${k8s}-nvidia data volume with ${#images[@]} image(s) pulled" \
  --tag-specifications "ResourceType=snapshot,Tags=[{Key=Name,Value=image-cache-k8s-${k8s}}]" \
  --query SnapshotId --output text)
log "snapshotting $volume as $snapshot"
while true; do
  state=$(aws ec2 describe-snapshots --snapshot-ids "$snapshot" --query 'Snapshots[0].State' --output text)
  case "$state" in
    completed) break ;;
    error) fail "snapshot $snapshot failed" ;;
  esac
  sleep 15
done
echo "$snapshot"
