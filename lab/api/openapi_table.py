"""The compact table :mod:`lab.api.openapi_builtin` expands into OpenAPI definitions.

``== <package>/<Name>: <description>`` starts a definition; each following line is a
field, ``<name>: <type>[!][@key] <description>`` (see :mod:`lab.api.openapi_builtin`).
"""

from __future__ import annotations

__all__ = ["TABLE"]

TABLE = """\
== meta/ObjectMeta: Standard object's metadata: name, namespace, labels, annotations, owners.
annotations: {string} Unstructured key value map stored with a resource.
creationTimestamp: Time When this object was created (set by the server).
deletionGracePeriodSeconds: integer Seconds allowed for graceful termination.
deletionTimestamp: Time When this resource will be deleted (set by the server).
finalizers: [string] Must be empty before the object is deleted from the registry.
generateName: string Prefix of a server-generated name, used when name is empty.
generation: integer Sequence number of a specific generation of the desired state.
labels: {string} Map of string keys and values to organize and select objects.
managedFields: [object] Which field managers manage which fields.
name: string Name, unique within a namespace.
namespace: string The namespace the object belongs to.
ownerReferences: [OwnerReference]@uid Objects this object depends on.
resourceVersion: string Opaque version of this object, for concurrency control.
selfLink: string Deprecated; not set.
uid: string Unique identifier of this object in time and space (set by the server).
== meta/OwnerReference: Information to identify an owning object.
apiVersion: string! API version of the referent.
blockOwnerDeletion: boolean Whether the owner cannot be deleted before this object.
controller: boolean Whether this reference points to the managing controller.
kind: string! Kind of the referent.
name: string! Name of the referent.
uid: string! UID of the referent.
== meta/LabelSelector: A label query over a set of resources.
matchExpressions: [object] A list of label selector requirements (ANDed).
matchLabels: {string} Map of {key,value} pairs (ANDed).
== core/Pod: A collection of containers that can run on a host.
spec: PodSpec Specification of the desired behavior of the pod.
status: PodStatus
== core/PodTemplateSpec: Describes the data a pod should have when created from a template.
metadata: ObjectMeta Standard object's metadata.
spec: PodSpec Pod specification.
== core/PodSpec: A description of a pod.
activeDeadlineSeconds: integer Seconds the pod may be active before it is failed.
affinity: object Scheduling constraints.
automountServiceAccountToken: boolean Whether a service account token is mounted.
containers: [Container]!@name Containers of the pod (at least one).
dnsConfig: object DNS parameters.
dnsPolicy: string DNS policy: ClusterFirst, Default, None, ClusterFirstWithHostNet.
enableServiceLinks: boolean Whether service environment variables are injected.
ephemeralContainers: [object]@name Ephemeral containers run in this pod.
hostAliases: [object]@ip Entries added to the pod's hosts file.
hostIPC: boolean Use the host's ipc namespace.
hostNetwork: boolean Use the host's network namespace.
hostPID: boolean Use the host's pid namespace.
hostUsers: boolean Use the host's user namespace.
hostname: string The pod's hostname.
imagePullSecrets: [object]@name Secrets used to pull images.
initContainers: [Container]@name Containers run to completion before the others start.
nodeName: string The node the pod is bound to (set through the binding subresource).
nodeSelector: {string} Labels a node must have for the pod to be scheduled there.
os: object The OS of the containers.
overhead: {Quantity} Resource overhead of the pod's runtime.
preemptionPolicy: string Never or PreemptLowerPriority.
priority: integer Priority value.
priorityClassName: string Priority class of the pod.
readinessGates: [object] Extra conditions for pod readiness.
resourceClaims: [object]@name Resource claims of the pod.
resources: ResourceRequirements Pod-level resources.
restartPolicy: string Always, OnFailure or Never (default Always).
runtimeClassName: string RuntimeClass used to run the pod.
schedulerName: string Scheduler that dispatches the pod.
schedulingGates: [object]@name Gates that block scheduling.
securityContext: object Pod-level security attributes.
serviceAccount: string Deprecated alias of serviceAccountName.
serviceAccountName: string ServiceAccount used to run the pod.
setHostnameAsFQDN: boolean Whether the hostname is the FQDN.
shareProcessNamespace: boolean Share one process namespace between containers.
subdomain: string The pod's subdomain.
terminationGracePeriodSeconds: integer Seconds between SIGTERM and SIGKILL (default 30).
tolerations: [object] The pod's tolerations.
topologySpreadConstraints: [object]@topologyKey How pods spread across topology domains.
volumes: [Volume]@name Volumes that containers of the pod can mount.
== core/PodStatus: Information about the status of a pod.
conditions: [object]@type Current service state of the pod.
containerStatuses: [object] Status of each container.
ephemeralContainerStatuses: [object] Status of each ephemeral container.
hostIP: string IP address of the node.
hostIPs: [object]@ip IP addresses of the node.
initContainerStatuses: [object] Status of each init container.
message: string Why the pod is in this condition.
nominatedNodeName: string Node nominated for preemption.
phase: string Pending, Running, Succeeded, Failed or Unknown.
podIP: string IP address of the pod.
podIPs: [object]@ip IP addresses of the pod.
qosClass: string Guaranteed, Burstable or BestEffort.
reason: string Brief reason for the pod's state.
resize: string Status of a resize.
resourceClaimStatuses: [object]@name Status of resource claims.
startTime: Time When the kubelet acknowledged the pod.
== core/Container: A single application container that you want to run within a pod.
args: [string] Arguments to the entrypoint.
command: [string] Entrypoint array (the image's ENTRYPOINT when empty).
env: [EnvVar]@name Environment variables to set in the container.
envFrom: [object] Sources to populate environment variables from.
image: string Container image name.
imagePullPolicy: string Always, Never or IfNotPresent.
lifecycle: object Actions on container lifecycle events.
livenessProbe: object Periodic probe of container liveness.
name: string! Name of the container, a DNS label unique in the pod.
ports: [ContainerPort]@containerPort Ports exposed by the container.
readinessProbe: object Periodic probe of container service readiness.
resizePolicy: [object] Resize policy for the container.
resources: ResourceRequirements Compute resources required by this container.
restartPolicy: string Restart behavior of an init container (Always).
securityContext: object Security options the container runs with.
startupProbe: object Probe that must succeed before the others start.
stdin: boolean Whether a stdin buffer is allocated.
stdinOnce: boolean Whether stdin closes after the first attach.
terminationMessagePath: string File the termination message is read from.
terminationMessagePolicy: string File or FallbackToLogsOnError.
tty: boolean Whether a TTY is allocated.
volumeDevices: [object]@devicePath Block devices used by the container.
volumeMounts: [VolumeMount]@mountPath Pod volumes to mount into the filesystem.
workingDir: string Working directory of the container.
== core/EnvVar: An environment variable present in a container.
name: string! Name of the environment variable.
value: string Value of the variable.
valueFrom: object Source for the variable's value (secret, config map, field).
== core/ContainerPort: A network port in a single container.
containerPort: integer! Port number on the pod's IP address.
hostIP: string Host IP to bind the external port to.
hostPort: integer Port number on the host.
name: string Name of the port (an IANA_SVC_NAME).
protocol: string UDP, TCP or SCTP (default TCP).
== core/VolumeMount: A mounting of a volume within a container.
mountPath: string! Path within the container.
mountPropagation: string How mounts are propagated.
name: string! Name of the volume.
readOnly: boolean Mounted read-only when true.
recursiveReadOnly: string Whether read-only mounts are recursively read-only.
subPath: string Path within the volume to mount.
subPathExpr: string Expanded path within the volume to mount.
== core/ResourceRequirements: Compute resource requirements.
claims: [object]@name Resource claims used by this container.
limits: {Quantity} Maximum amount of compute resources allowed.
requests: {Quantity} Minimum amount of compute resources required.
== core/Volume: A named volume in a pod that may be accessed by any container in the pod.
name: string! Name of the volume.
awsElasticBlockStore: object A volume source.
azureDisk: object A volume source.
azureFile: object A volume source.
cephfs: object A volume source.
cinder: object A volume source.
configMap: object A volume source.
csi: object A volume source.
downwardAPI: object A volume source.
emptyDir: object A volume source.
ephemeral: object A volume source.
fc: object A volume source.
flexVolume: object A volume source.
flocker: object A volume source.
gcePersistentDisk: object A volume source.
gitRepo: object A volume source.
glusterfs: object A volume source.
hostPath: object A volume source.
image: object A volume source.
iscsi: object A volume source.
nfs: object A volume source.
persistentVolumeClaim: object A volume source.
photonPersistentDisk: object A volume source.
portworxVolume: object A volume source.
projected: object A volume source.
quobyte: object A volume source.
rbd: object A volume source.
scaleIO: object A volume source.
secret: object A volume source.
storageos: object A volume source.
vsphereVolume: object A volume source.
== core/Service: A named abstraction of software service.
spec: ServiceSpec
status: object Most recently observed status (read-only, written by the system).
== core/ServiceSpec: The attributes a user creates on a service.
allocateLoadBalancerNodePorts: boolean Whether node ports are allocated for load balancers.
clusterIP: string IP address of the service.
clusterIPs: [string] IP addresses of the service.
externalIPs: [string] IP addresses for which nodes accept traffic.
externalName: string External reference for ExternalName services.
externalTrafficPolicy: string Cluster or Local.
healthCheckNodePort: integer Health check node port.
internalTrafficPolicy: string Cluster or Local.
ipFamilies: [string] IP families of the service.
ipFamilyPolicy: string SingleStack, PreferDualStack or RequireDualStack.
loadBalancerClass: string Class of the load balancer implementation.
loadBalancerIP: string Deprecated.
loadBalancerSourceRanges: [string] Client IP ranges allowed.
ports: [ServicePort]@port Ports exposed by the service.
publishNotReadyAddresses: boolean Publish addresses of pods that are not ready.
selector: {string} Route traffic to pods with these labels.
sessionAffinity: string ClientIP or None.
sessionAffinityConfig: object Configuration of session affinity.
trafficDistribution: string How traffic is distributed to endpoints.
type: string ClusterIP, NodePort, LoadBalancer or ExternalName.
== core/ServicePort: A port of a service.
appProtocol: string Application protocol of the port.
name: string Name of the port within the service.
nodePort: integer Port on each node.
port: integer! Port exposed by the service.
protocol: string TCP, UDP or SCTP.
targetPort: IntOrString Port to access on the pods.
== core/PersistentVolumeClaim: A user's request for and claim to a persistent volume.
spec: PersistentVolumeClaimSpec
status: object Most recently observed status (read-only, written by the system).
== core/PersistentVolumeClaimSpec: The desired characteristics of a volume.
accessModes: [string] Desired access modes of the volume.
dataSource: object Source to populate the volume from.
dataSourceRef: object Object to populate the volume from.
resources: VolumeResourceRequirements Minimum resources the volume should have.
selector: LabelSelector Label query over volumes to bind.
storageClassName: string Name of the StorageClass required by the claim.
volumeAttributesClassName: string VolumeAttributesClass used by the claim.
volumeMode: string Filesystem or Block.
volumeName: string Binding reference to the PersistentVolume.
== core/VolumeResourceRequirements: Storage resource requirements of a volume.
limits: {Quantity} Maximum resources.
requests: {Quantity} Minimum resources.
== core/Secret: Secret data of a certain type.
data: {string} Base64-encoded secret values.
immutable: boolean Whether the data cannot be updated.
stringData: {string} Write-only values merged into data as plain strings.
type: string Type of the secret's data.
== core/ConfigMap: Configuration data for pods to consume.
binaryData: {string} Base64-encoded binary values.
data: {string} Configuration values.
immutable: boolean Whether the data cannot be updated.
== core/ServiceAccount: An identity for processes that run in a pod.
automountServiceAccountToken: boolean Whether a token is mounted automatically.
imagePullSecrets: [object] Secrets used to pull images.
secrets: [object]@name Secrets pods running as this account may use.
== core/Event: A report of an event somewhere in the cluster.
action: string
message: string
reason: string
reportingComponent: string
reportingInstance: string
type: string
count: integer Times this event has occurred.
eventTime: string Time when this event was first observed (microseconds).
firstTimestamp: Time When the event was first recorded.
involvedObject: object! The object this event is about.
lastTimestamp: Time When the event was last recorded.
related: object Secondary object.
series: object Data about the event series.
source: object The component reporting this event.
== core/Namespace: A scope for names.
spec: object Specification of the desired behavior.
status: object Most recently observed status (read-only, written by the system).
== core/Node: A worker node.
spec: object Specification of the desired behavior.
status: object Most recently observed status (read-only, written by the system).
== core/Binding: Ties one object to another.
target: object! The target object to bind to.
== apps/Deployment: Declarative updates for pods and replica sets.
spec: DeploymentSpec
status: object Most recently observed status (read-only, written by the system).
== apps/DeploymentSpec: The desired behavior of a Deployment.
minReadySeconds: integer Seconds a new pod must be ready to count as available.
paused: boolean Whether the deployment is paused.
progressDeadlineSeconds: integer Seconds before the deployment counts as failed.
replicas: integer Number of desired pods (default 1).
revisionHistoryLimit: integer Old ReplicaSets kept for rollback.
selector: LabelSelector! Label selector for pods.
strategy: object Strategy used to replace old pods by new ones.
template: PodTemplateSpec! Template of the pods.
== apps/StatefulSet: Pods with consistent identities and stable storage.
spec: StatefulSetSpec
status: object Most recently observed status (read-only, written by the system).
== apps/StatefulSetSpec: A specification of a StatefulSet.
minReadySeconds: integer Seconds a new pod must be ready to count as available.
ordinals: object Numbering of replica indices.
persistentVolumeClaimRetentionPolicy: object Lifecycle of claims from volumeClaimTemplates.
podManagementPolicy: string OrderedReady or Parallel.
replicas: integer Desired number of replicas (default 1).
revisionHistoryLimit: integer Revisions kept in the history.
selector: LabelSelector! Label query over pods.
serviceName: string Service that governs this StatefulSet.
template: PodTemplateSpec! Template of the pods.
updateStrategy: object How pods are updated.
volumeClaimTemplates: [PersistentVolumeClaim] Claims pods may reference.
== apps/ReplicaSet: Ensures a number of pod replicas run.
spec: ReplicaSetSpec
status: object Most recently observed status (read-only, written by the system).
== apps/ReplicaSetSpec: A specification of a ReplicaSet.
minReadySeconds: integer Seconds a new pod must be ready to count as available.
replicas: integer Number of desired replicas (default 1).
selector: LabelSelector! Label query over pods.
template: PodTemplateSpec Template of the pods.
== apps/DaemonSet: A daemon set.
spec: DaemonSetSpec
status: object Most recently observed status (read-only, written by the system).
== apps/DaemonSetSpec: A specification of a DaemonSet.
minReadySeconds: integer Seconds a new pod must be ready to count as available.
revisionHistoryLimit: integer Old histories kept for rollback.
selector: LabelSelector! Label query over pods.
template: PodTemplateSpec! Template of the pods.
updateStrategy: object How pods are updated.
== batch/Job: The configuration of a single job.
spec: JobSpec
status: object Most recently observed status (read-only, written by the system).
== batch/JobSpec: The description of a job.
activeDeadlineSeconds: integer
backoffLimit: integer
backoffLimitPerIndex: integer
completions: integer
maxFailedIndexes: integer
parallelism: integer
ttlSecondsAfterFinished: integer
completionMode: string NonIndexed or Indexed.
managedBy: string Controller that manages the job.
manualSelector: boolean Whether the selector is set by hand.
podFailurePolicy: object How failed pods count.
podReplacementPolicy: string When replacement pods are created.
selector: LabelSelector Label query over pods.
successPolicy: object When the job is declared succeeded.
suspend: boolean Whether the job is suspended.
template: PodTemplateSpec! Template of the pods.
== batch/CronJob: A single cron job.
spec: CronJobSpec
status: object Most recently observed status (read-only, written by the system).
== batch/CronJobSpec: A cron job's schedule and job.
concurrencyPolicy: string Allow, Forbid or Replace.
failedJobsHistoryLimit: integer Failed jobs kept.
jobTemplate: JobTemplateSpec! The job to create.
schedule: string! The schedule in Cron format.
startingDeadlineSeconds: integer Deadline for starting a missed job.
successfulJobsHistoryLimit: integer Successful jobs kept.
suspend: boolean Whether later runs are suspended.
timeZone: string Time zone of the schedule.
== batch/JobTemplateSpec: The job to create from a CronJob.
metadata: ObjectMeta Standard object's metadata.
spec: JobSpec
== policy/PodDisruptionBudget: The maximum disruption that can be caused to a collection of pods.
spec: PodDisruptionBudgetSpec
status: object Most recently observed status (read-only, written by the system).
== policy/PodDisruptionBudgetSpec: A description of a PodDisruptionBudget.
maxUnavailable: IntOrString Pods that may be unavailable after an eviction.
minAvailable: IntOrString Pods that must stay available after an eviction.
selector: LabelSelector Label query over pods.
unhealthyPodEvictionPolicy: string IfHealthyBudget or AlwaysAllow.
== storage.k8s.io/StorageClass: A class of dynamically provisioned persistent volumes.
allowVolumeExpansion: boolean Whether volumes may grow.
allowedTopologies: [object] Where volumes may be provisioned.
mountOptions: [string] Mount options of provisioned volumes.
parameters: {string} Parameters of the provisioner.
provisioner: string! The provisioner.
reclaimPolicy: string Delete or Retain.
volumeBindingMode: string Immediate or WaitForFirstConsumer.
== apiextensions.k8s.io/CustomResourceDefinition: A resource served by the API server from its definition.
spec: object! The resource's group, names, scope and versions.
status: object Most recently observed status (read-only, written by the system).
== rbac.authorization.k8s.io/Role: Namespaced rules.
rules: [PolicyRule] The role's rules.
== rbac.authorization.k8s.io/ClusterRole: Cluster-wide rules.
aggregationRule: object Roles aggregated into this one.
rules: [PolicyRule] The rules.
== rbac.authorization.k8s.io/PolicyRule: Actions allowed on resources.
apiGroups: [string] API groups of the resources.
nonResourceURLs: [string] Non-resource URLs.
resourceNames: [string] Allowed names.
resources: [string] Resources.
verbs: [string]! Verbs.
== rbac.authorization.k8s.io/RoleBinding: Grants a role to subjects in a namespace.
roleRef: object! The role granted.
subjects: [object] Who is granted it.
== rbac.authorization.k8s.io/ClusterRoleBinding: Grants a cluster role to subjects.
roleRef: object! The role granted.
subjects: [object] Who is granted it.
== coordination.k8s.io/Lease: A lease.
spec: object Specification of the desired behavior.
== authorization.k8s.io/SelfSubjectAccessReview: Checks whether the current user can perform an action.
spec: object! The action to check.
status: object Most recently observed status (read-only, written by the system).
"""
