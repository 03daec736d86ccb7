"""JSON schemas for the custom resources the manifests use, written from each CRD's documented fields.

kubernetes-validate ships the schemas of core Kubernetes only. These cover the fields this project sets
(and reject unknown ones where the CRD does, so a typo such as `pollingIntervall` fails), not every
field each operator accepts: KEDA ScaledObject/TriggerAuthentication (keda.sh/v1alpha1), Prometheus
Operator ServiceMonitor/PrometheusRule (monitoring.coreos.com/v1), RabbitMQ Cluster Operator
RabbitmqCluster (rabbitmq.com/v1beta1), MongoDB Community Operator MongoDBCommunity
(mongodbcommunity.mongodb.com/v1).
"""

from __future__ import annotations

_STR = {"type": "string"}
_INT = {"type": "integer"}
_QUANTITY = {
    "anyOf": [{"type": "string", "pattern": r"^[0-9.]+(m|k|Ki|Mi|Gi|Ti|M|G|T)?$"}, {"type": "integer"}]
}
_RESOURCES = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "requests": {"type": "object", "additionalProperties": _QUANTITY},
        "limits": {"type": "object", "additionalProperties": _QUANTITY},
    },
}
_METADATA = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"},
        "namespace": _STR,
        "labels": {"type": "object", "additionalProperties": _STR},
        "annotations": {"type": "object", "additionalProperties": _STR},
    },
}


def _object(api_version: str, kind: str, spec: dict, extra: dict | None = None) -> dict:
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": _METADATA,
            "spec": spec,
            **(extra or {}),
        },
    }


_HPA_BEHAVIOR_RULE = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "stabilizationWindowSeconds": {"type": "integer", "minimum": 0, "maximum": 3600},
        "selectPolicy": {"enum": ["Max", "Min", "Disabled"]},
        "policies": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["type", "value", "periodSeconds"],
                "additionalProperties": False,
                "properties": {
                    "type": {"enum": ["Pods", "Percent"]},
                    "value": {"type": "integer", "minimum": 1},
                    "periodSeconds": {"type": "integer", "minimum": 1, "maximum": 1800},
                },
            },
        },
    },
}

_KEDA_TRIGGER = {
    "type": "object",
    "required": ["type", "metadata"],
    "additionalProperties": False,
    "properties": {
        "type": _STR,
        "name": _STR,
        "metadata": {"type": "object", "additionalProperties": _STR},
        "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
        "useCachedMetrics": {"type": "boolean"},
        "authenticationRef": {
            "type": "object",
            "required": ["name"],
            "additionalProperties": False,
            "properties": {
                "name": _STR,
                "kind": {"enum": ["TriggerAuthentication", "ClusterTriggerAuthentication"]},
            },
        },
    },
    "allOf": [
        {
            "if": {"properties": {"type": {"const": "rabbitmq"}}},
            "then": {
                "properties": {
                    "metadata": {
                        "required": ["queueName", "mode", "value"],
                        "properties": {
                            "protocol": {"enum": ["amqp", "http", "auto"]},
                            "mode": {"enum": ["QueueLength", "MessageRate"]},
                            "value": {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?$"},
                            "activationValue": {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?$"},
                        },
                    }
                }
            },
        },
        {
            "if": {"properties": {"type": {"enum": ["cpu", "memory"]}}},
            "then": {
                "required": ["metricType"],
                "properties": {
                    "metricType": {"enum": ["Utilization", "AverageValue"]},
                    "metadata": {"required": ["value"], "properties": {"value": {"pattern": r"^[0-9]+$"}}},
                },
            },
        },
    ],
}

SCALED_OBJECT = _object(
    "keda.sh/v1alpha1",
    "ScaledObject",
    {
        "type": "object",
        "required": ["scaleTargetRef", "triggers"],
        "additionalProperties": False,
        "properties": {
            "scaleTargetRef": {
                "type": "object",
                "required": ["name"],
                "additionalProperties": False,
                "properties": {
                    "name": _STR,
                    "kind": _STR,
                    "apiVersion": _STR,
                    "envSourceContainerName": _STR,
                },
            },
            "pollingInterval": {"type": "integer", "minimum": 1},
            "cooldownPeriod": {"type": "integer", "minimum": 0},
            "initialCooldownPeriod": {"type": "integer", "minimum": 0},
            "idleReplicaCount": {"type": "integer", "minimum": 0},
            "minReplicaCount": {"type": "integer", "minimum": 0},
            "maxReplicaCount": {"type": "integer", "minimum": 1},
            "fallback": {
                "type": "object",
                "required": ["failureThreshold", "replicas"],
                "additionalProperties": False,
                "properties": {"failureThreshold": {"type": "integer", "minimum": 1}, "replicas": _INT},
            },
            "advanced": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "restoreToOriginalReplicaCount": {"type": "boolean"},
                    "horizontalPodAutoscalerConfig": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "name": _STR,
                            "behavior": {
                                "type": "object",
                                "additionalProperties": False,
                                "properties": {
                                    "scaleUp": _HPA_BEHAVIOR_RULE,
                                    "scaleDown": _HPA_BEHAVIOR_RULE,
                                },
                            },
                        },
                    },
                },
            },
            "triggers": {"type": "array", "minItems": 1, "items": _KEDA_TRIGGER},
        },
    },
)

TRIGGER_AUTHENTICATION = _object(
    "keda.sh/v1alpha1",
    "TriggerAuthentication",
    {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "secretTargetRef": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["parameter", "name", "key"],
                    "additionalProperties": False,
                    "properties": {"parameter": _STR, "name": _STR, "key": _STR},
                },
            }
        },
    },
)

_ENDPOINT = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "port": _STR,
        "targetPort": {"anyOf": [_STR, _INT]},
        "path": {"type": "string", "pattern": "^/"},
        "scheme": {"enum": ["http", "https"]},
        "interval": {"type": "string", "pattern": r"^[0-9]+(ms|s|m|h)$"},
        "scrapeTimeout": {"type": "string", "pattern": r"^[0-9]+(ms|s|m|h)$"},
        "honorLabels": {"type": "boolean"},
    },
}

_LABEL_SELECTOR = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "matchLabels": {"type": "object", "additionalProperties": _STR},
        "matchExpressions": {"type": "array"},
    },
}

SERVICE_MONITOR = _object(
    "monitoring.coreos.com/v1",
    "ServiceMonitor",
    {
        "type": "object",
        "required": ["selector", "endpoints"],
        "additionalProperties": False,
        "properties": {
            "jobLabel": _STR,
            "selector": _LABEL_SELECTOR,
            "namespaceSelector": {"type": "object"},
            "endpoints": {"type": "array", "minItems": 1, "items": _ENDPOINT},
        },
    },
)

_RULE = {
    "type": "object",
    "required": ["expr"],
    "additionalProperties": False,
    "oneOf": [{"required": ["record"]}, {"required": ["alert"]}],
    "properties": {
        "record": {"type": "string", "pattern": r"^[a-zA-Z_:][a-zA-Z0-9_:]*$"},
        "alert": {"type": "string", "pattern": r"^[A-Za-z][A-Za-z0-9]*$"},
        "expr": {"anyOf": [_STR, _INT]},
        "for": {"type": "string", "pattern": r"^[0-9]+(ms|s|m|h|d)$"},
        "labels": {"type": "object", "additionalProperties": _STR},
        "annotations": {"type": "object", "additionalProperties": _STR},
    },
}

PROMETHEUS_RULE = _object(
    "monitoring.coreos.com/v1",
    "PrometheusRule",
    {
        "type": "object",
        "required": ["groups"],
        "additionalProperties": False,
        "properties": {
            "groups": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "rules"],
                    "additionalProperties": False,
                    "properties": {
                        "name": _STR,
                        "interval": {"type": "string", "pattern": r"^[0-9]+(s|m|h)$"},
                        "rules": {"type": "array", "items": _RULE},
                    },
                },
            }
        },
    },
)

RABBITMQ_CLUSTER = _object(
    "rabbitmq.com/v1beta1",
    "RabbitmqCluster",
    {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "replicas": {"type": "integer", "minimum": 0},
            "image": _STR,
            "imagePullSecrets": {"type": "array"},
            "resources": _RESOURCES,
            "persistence": {
                "type": "object",
                "additionalProperties": False,
                "properties": {"storageClassName": _STR, "storage": _QUANTITY},
            },
            "rabbitmq": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "additionalConfig": _STR,
                    "advancedConfig": _STR,
                    "envConfig": _STR,
                    "additionalPlugins": {"type": "array", "items": _STR},
                },
            },
            "affinity": {"type": "object"},
            "tolerations": {"type": "array"},
            "service": {"type": "object"},
            "tls": {"type": "object"},
            "override": {"type": "object"},
            "terminationGracePeriodSeconds": _INT,
        },
    },
)

MONGODB_COMMUNITY = _object(
    "mongodbcommunity.mongodb.com/v1",
    "MongoDBCommunity",
    {
        "type": "object",
        "required": ["members", "type", "version"],
        "additionalProperties": False,
        "properties": {
            "members": {"type": "integer", "minimum": 1},
            "arbiters": _INT,
            "type": {"enum": ["ReplicaSet"]},
            "version": {"type": "string", "pattern": r"^[0-9]+\.[0-9]+\.[0-9]+$"},
            "featureCompatibilityVersion": _STR,
            "security": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "authentication": {
                        "type": "object",
                        "required": ["modes"],
                        "properties": {
                            "modes": {
                                "type": "array",
                                "items": {"enum": ["SCRAM", "SCRAM-SHA-1", "SCRAM-SHA-256", "X509"]},
                            }
                        },
                    },
                    "tls": {"type": "object"},
                    "roles": {"type": "array"},
                },
            },
            "users": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "db", "roles", "scramCredentialsSecretName"],
                    "additionalProperties": False,
                    "properties": {
                        "name": _STR,
                        "db": _STR,
                        "passwordSecretRef": {
                            "type": "object",
                            "required": ["name"],
                            "properties": {"name": _STR, "key": _STR},
                        },
                        "roles": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["name", "db"],
                                "additionalProperties": False,
                                "properties": {"name": _STR, "db": _STR},
                            },
                        },
                        "scramCredentialsSecretName": {"type": "string", "pattern": r"^[a-z0-9-]+$"},
                        "connectionStringSecretName": _STR,
                    },
                },
            },
            "additionalMongodConfig": {"type": "object"},
            "statefulSet": {
                "type": "object",
                "required": ["spec"],
                "properties": {"spec": {"type": "object"}, "metadata": {"type": "object"}},
            },
        },
    },
)

#: (apiVersion, kind) -> schema
CRD_SCHEMAS: dict[tuple[str, str], dict] = {
    ("keda.sh/v1alpha1", "ScaledObject"): SCALED_OBJECT,
    ("keda.sh/v1alpha1", "TriggerAuthentication"): TRIGGER_AUTHENTICATION,
    ("monitoring.coreos.com/v1", "ServiceMonitor"): SERVICE_MONITOR,
    ("monitoring.coreos.com/v1", "PrometheusRule"): PROMETHEUS_RULE,
    ("rabbitmq.com/v1beta1", "RabbitmqCluster"): RABBITMQ_CLUSTER,
    ("mongodbcommunity.mongodb.com/v1", "MongoDBCommunity"): MONGODB_COMMUNITY,
}
