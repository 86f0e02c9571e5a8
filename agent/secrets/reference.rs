//! `valueFrom`, exactly as an ECS task definition's `secrets` writes it.
//!
//! - SSM Parameter Store: a name (`/cruddur/backend-flask/CONNECTION_URL`), optionally with a
//!   version or label selector (`…:3`, `…:prod`), or a full ARN
//!   (`arn:aws:ssm:us-east-1:123456789012:parameter/cruddur/backend-flask/CONNECTION_URL`), whose
//!   region is used for it. The ARN goes to the API as given, as ECS sends it: a parameter
//!   shared from another account is read only by its ARN, and cutting it down to a name would
//!   read the caller's own parameter of that name instead.
//! - Secrets Manager: a full ARN with ECS's optional suffix
//!   `arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME:json-key:version-stage:version-id`
//!   (empty fields are skipped: `…:secret:flask-api/database:username::`). ECS needs an ARN
//!   here; the agent also takes `secretsmanager:NAME[:json-key:version-stage:version-id]`.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reference {
    Ssm {
        /// The parameter name or ARN as written, with its selector if any (`/a/b:3`).
        name: String,
        region: Option<String>,
    },
    SecretsManager {
        /// A name, or an ARN without ECS's suffix: what GetSecretValue takes as SecretId.
        secret_id: String,
        region: Option<String>,
        json_key: Option<String>,
        version_stage: Option<String>,
        version_id: Option<String>,
    },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("valueFrom {value:?}: {reason}")]
pub struct ReferenceError {
    value: String,
    reason: String,
}

fn non_empty(s: Option<&str>) -> Option<String> {
    s.filter(|x| !x.is_empty()).map(str::to_string)
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: &str| ReferenceError { value: s.to_string(), reason: reason.to_string() };
        let s = s.trim();
        if s.is_empty() {
            return Err(err("it is empty"));
        }
        if let Some(rest) = s.strip_prefix("arn:") {
            let parts: Vec<&str> = rest.splitn(5, ':').collect();
            let [_partition, service, region, _account, resource] = parts[..] else {
                return Err(err("an ARN has the form arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE"));
            };
            let region = non_empty(Some(region));
            return match service {
                "ssm" => {
                    let name = resource.strip_prefix("parameter").ok_or_else(|| err("an SSM ARN names a parameter: …:parameter/NAME"))?;
                    if !matches!(name.strip_prefix('/'), Some(n) if !n.is_empty() && !n.starts_with(':')) {
                        return Err(err("the parameter name is missing after parameter/"));
                    }
                    if name.matches(':').count() > 1 {
                        return Err(err("an SSM parameter ARN takes at most one :VERSION or :LABEL"));
                    }
                    Ok(Reference::Ssm { name: s.to_string(), region })
                }
                "secretsmanager" => {
                    let mut f = resource.split(':');
                    if f.next() != Some("secret") {
                        return Err(err("a Secrets Manager ARN names a secret: …:secret:NAME"));
                    }
                    let name = f.next().filter(|n| !n.is_empty()).ok_or_else(|| err("the secret name is missing"))?;
                    let arn_prefix = &s[..s.find(":secret:").expect("checked") + ":secret:".len()];
                    let (json_key, version_stage, version_id) = (non_empty(f.next()), non_empty(f.next()), non_empty(f.next()));
                    if f.next().is_some() {
                        return Err(err("too many fields: after the name come at most json-key:version-stage:version-id"));
                    }
                    Ok(Reference::SecretsManager { secret_id: format!("{arn_prefix}{name}"), region, json_key, version_stage, version_id })
                }
                other => Err(err(&format!("service {other:?} is not supported: use an ssm or secretsmanager ARN"))),
            };
        }
        if let Some(rest) = s.strip_prefix("secretsmanager:") {
            let mut f = rest.split(':');
            let name = f.next().filter(|n| !n.is_empty()).ok_or_else(|| err("the secret name is missing"))?;
            let (json_key, version_stage, version_id) = (non_empty(f.next()), non_empty(f.next()), non_empty(f.next()));
            if f.next().is_some() {
                return Err(err("too many fields: secretsmanager:NAME[:json-key:version-stage:version-id]"));
            }
            return Ok(Reference::SecretsManager { secret_id: name.to_string(), region: None, json_key, version_stage, version_id });
        }
        if s.matches(':').count() > 1 {
            return Err(err("an SSM parameter name takes at most one :VERSION or :LABEL"));
        }
        Ok(Reference::Ssm { name: s.to_string(), region: None })
    }
}

impl fmt::Display for Reference {
    /// A short, value-free description for messages and `agent env`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Ssm { name, .. } => write!(f, "ssm:{name}"),
            Reference::SecretsManager { secret_id, json_key, version_stage, version_id, .. } => {
                let name = secret_id.rsplit(":secret:").next().unwrap_or(secret_id);
                write!(f, "secretsmanager:{name}")?;
                if let Some(k) = json_key {
                    write!(f, "#{k}")?;
                }
                for v in [version_stage, version_id].into_iter().flatten() {
                    write!(f, "@{v}")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ssm(name: &str, region: Option<&str>) -> Reference {
        Reference::Ssm { name: name.into(), region: region.map(Into::into) }
    }

    #[test]
    fn ssm_names_selectors_and_arns() {
        assert_eq!("/cruddur/backend-flask/CONNECTION_URL".parse(), Ok(ssm("/cruddur/backend-flask/CONNECTION_URL", None)));
        assert_eq!("/a/b:3".parse(), Ok(ssm("/a/b:3", None)));
        assert_eq!("plain:prod".parse(), Ok(ssm("plain:prod", None)));
        // ARNs go to the API as written (another account's shared parameter is read by ARN).
        let arn = "arn:aws:ssm:eu-west-1:999999999999:parameter/cruddur/backend-flask/X";
        assert_eq!(arn.parse(), Ok(ssm(arn, Some("eu-west-1"))));
        assert_eq!(format!("{arn}:3").parse(), Ok(ssm(&format!("{arn}:3"), Some("eu-west-1"))));
        let top = "arn:aws:ssm:us-east-1:123456789012:parameter/top";
        assert_eq!(top.parse(), Ok(ssm(top, Some("us-east-1"))));
        assert!("arn:aws:ssm:us-east-1:1:parameter/".parse::<Reference>().is_err());
        assert!("arn:aws:ssm:us-east-1:1:parameter/a:1:2".parse::<Reference>().is_err());
        assert!("a:b:c".parse::<Reference>().is_err());
        assert!("arn:aws:s3:::bucket".parse::<Reference>().is_err());
        assert!("".parse::<Reference>().is_err());
    }

    #[test]
    fn secrets_manager_arn_with_ecs_suffix() {
        let r: Reference = "arn:aws:secretsmanager:us-east-1:123456789012:secret:flask-api/database:username::".parse().unwrap();
        assert_eq!(
            r,
            Reference::SecretsManager {
                secret_id: "arn:aws:secretsmanager:us-east-1:123456789012:secret:flask-api/database".into(),
                region: Some("us-east-1".into()),
                json_key: Some("username".into()),
                version_stage: None,
                version_id: None,
            }
        );
        assert_eq!(r.to_string(), "secretsmanager:flask-api/database#username");
        let r: Reference = "secretsmanager:flask-api/database::AWSPREVIOUS:".parse().unwrap();
        assert!(matches!(r, Reference::SecretsManager { json_key: None, version_stage: Some(ref s), .. } if s == "AWSPREVIOUS"));
        // A stage with its matching id, as ECS passes both.
        let r: Reference = "secretsmanager:x:k:AWSCURRENT:abc".parse().unwrap();
        assert!(matches!(&r, Reference::SecretsManager { version_stage: Some(s), version_id: Some(i), .. } if s == "AWSCURRENT" && i == "abc"));
        assert_eq!(r.to_string(), "secretsmanager:x#k@AWSCURRENT@abc");
        assert!("arn:aws:secretsmanager:us-east-1:1:secret:x:a:b:c:d".parse::<Reference>().is_err());
    }

    mod valuefrom {
        use proptest::prelude::*;

        use super::super::Reference;

        fn partition() -> impl Strategy<Value = &'static str> {
            prop::sample::select(vec!["aws", "aws-cn", "aws-us-gov", "aws-iso"])
        }
        fn region() -> impl Strategy<Value = String> {
            "[a-z]{2}(-gov)?-[a-z]{4,9}-[1-9]"
        }
        fn account() -> impl Strategy<Value = String> {
            "[0-9]{12}"
        }
        /// A hierarchical or plain parameter name, with a version or label selector or none.
        fn parameter() -> impl Strategy<Value = String> {
            ("(/[A-Za-z0-9_.-]{1,12}){1,4}|[A-Za-z0-9_.-]{1,12}", prop::option::of("[0-9]{1,3}|[A-Za-z][A-Za-z0-9_.-]{0,10}")).prop_map(|(n, sel)| {
                match sel {
                    Some(s) => format!("{n}:{s}"),
                    None => n,
                }
            })
        }
        fn field() -> impl Strategy<Value = Option<String>> {
            prop::option::of("[A-Za-z0-9_-]{1,12}")
        }

        proptest! {
            /// An SSM ARN of any partition is kept as written, its region taken from it.
            #[test]
            fn ssm_arns_are_kept_whole(p in partition(), r in region(), a in account(), name in parameter()) {
                let slash = if name.starts_with('/') { "" } else { "/" };
                let arn = format!("arn:{p}:ssm:{r}:{a}:parameter{slash}{name}");
                let got: Reference = arn.parse().unwrap();
                prop_assert_eq!(got, Reference::Ssm { name: arn.clone(), region: Some(r) });
            }

            /// A plain SSM name with at most one selector is itself.
            #[test]
            fn ssm_names_are_themselves(name in parameter()) {
                prop_assert_eq!(name.parse::<Reference>().unwrap(), Reference::Ssm { name: name.clone(), region: None });
            }

            /// A Secrets Manager ARN with 0 to 3 of ECS's suffix fields (empty ones skipped) gives
            /// the ARN of the secret and each field; 4 or more suffix fields are refused.
            #[test]
            fn secrets_manager_suffixes(p in partition(), r in region(), a in account(), name in "[A-Za-z0-9/_+=.@-]{1,20}-[A-Za-z0-9]{6}",
                                        k in field(), st in field(), id in field(), n in 0usize..=3, extra in "[a-z]{1,5}") {
                let base = format!("arn:{p}:secretsmanager:{r}:{a}:secret:{name}");
                let fields = [k.clone(), st.clone(), id.clone()];
                let suffix: String = fields[..n].iter().map(|f| format!(":{}", f.clone().unwrap_or_default())).collect();
                let got: Reference = format!("{base}{suffix}").parse().unwrap();
                let want = |i: usize| if i < n { fields[i].clone() } else { None };
                prop_assert_eq!(got, Reference::SecretsManager {
                    secret_id: base.clone(), region: Some(r), json_key: want(0), version_stage: want(1), version_id: want(2)
                });
                let too_many = format!("{base}:{}:{}:{}:{extra}", k.unwrap_or_default(), st.unwrap_or_default(), id.unwrap_or_default());
                prop_assert!(too_many.parse::<Reference>().is_err());
            }
        }
    }
}
