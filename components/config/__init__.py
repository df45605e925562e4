"""The stack contract: the schema of every section of a stack file (one module per section),
loading it from Pulumi config, error messages that name each setting, cross-setting rules.
Imports nothing else of `components`: the layers above import it."""

from .addons import AddonsConfig
from .cluster import KUBERNETES_VERSIONS, AccessEntry, ClusterConfig, VpcConfig
from .errors import ConfigError
from .fields import EngineVocabulary, Vocabulary
from .ingress import IngressConfig
from .load import PROJECT, SECRET_KEYS, load, project_keys, settings_of, validate_settings
from .models import SLOTS, ModelConfig, ModelSettings, Replicas, Slot
from .monitoring import AlertThresholds, MonitoringConfig
from .node_groups import GpuNodeGroupConfig, SystemNodeGroupConfig
from .stack import Stack, StackConfig
from .storage import StorageConfig

__all__ = ["AccessEntry", "AddonsConfig", "AlertThresholds", "ClusterConfig", "ConfigError", "EngineVocabulary",
           "GpuNodeGroupConfig",
           "IngressConfig", "KUBERNETES_VERSIONS", "ModelConfig", "ModelSettings", "MonitoringConfig",
           "PROJECT", "Replicas", "SECRET_KEYS", "SLOTS", "Slot", "Stack", "StackConfig",
           "StorageConfig", "SystemNodeGroupConfig", "Vocabulary", "VpcConfig", "load",
           "project_keys", "settings_of", "validate_settings"]
