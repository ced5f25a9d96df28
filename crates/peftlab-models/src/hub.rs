//! Resolving a `--model` argument: a local path, or (with the `hub` feature) a Hugging Face
//! model id downloaded with the `hf-hub` crate into its usual cache.
//!
//! A local path always wins, so everything works offline. With `hub`, `"org/name"` or
//! `"org/name@revision"` fetches `config.json`, `tokenizer.json` (when the repository has one)
//! and `model.safetensors` — or `model.safetensors.index.json` and every shard it lists — and
//! returns the snapshot directory, which [`crate::zoo::load`] reads like any other. The
//! download path needs a network, which the test machines lack; the tests cover the local
//! branch, and the id parsing is tested without network.

use std::path::PathBuf;

use crate::ModelError;

/// A Hugging Face model id with an optional revision (`org/name@rev`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubId {
    /// Repository id, `org/name`.
    pub repo: String,
    /// Branch, tag or commit (default `main`).
    pub revision: String,
}

impl HubId {
    /// Parse `org/name` or `org/name@revision`; `None` if `spec` does not look like an id.
    pub fn parse(spec: &str) -> Option<Self> {
        let (repo, revision) = match spec.split_once('@') {
            Some((r, rev)) if !rev.is_empty() => (r, rev),
            Some(_) => return None,
            None => (spec, "main"),
        };
        let (org, name) = repo.split_once('/')?;
        let ok = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        (ok(org) && ok(name) && !repo.starts_with('.')).then(|| Self {
            repo: repo.to_string(),
            revision: revision.to_string(),
        })
    }
}

/// The model path for `spec`: `spec` itself when it exists locally; otherwise, with the `hub`
/// feature, the downloaded snapshot of the model id `spec`.
pub fn resolve(spec: &str) -> Result<PathBuf, ModelError> {
    let local = PathBuf::from(spec);
    if local.exists() {
        return Ok(local);
    }
    match HubId::parse(spec) {
        Some(id) => download(&id),
        None => Err(ModelError::File {
            path: local,
            reason: "no such model directory or .gguf file".into(),
        }),
    }
}

#[cfg(not(feature = "hub"))]
fn download(id: &HubId) -> Result<PathBuf, ModelError> {
    Err(ModelError::File {
        path: PathBuf::from(&id.repo),
        reason: "no such local path; downloading model ids needs the `hub` feature \
                 (cargo build --features hub) and a network"
            .into(),
    })
}

#[cfg(feature = "hub")]
fn download(id: &HubId) -> Result<PathBuf, ModelError> {
    use hf_hub::api::sync::Api;
    use hf_hub::{Repo, RepoType};

    let err = |what: &str, e: &dyn std::fmt::Display| ModelError::File {
        path: PathBuf::from(format!("{}@{}/{what}", id.repo, id.revision)),
        reason: format!("download failed: {e}"),
    };
    let api = Api::new().map_err(|e| err("", &e))?;
    let repo = api.repo(Repo::with_revision(
        id.repo.clone(),
        RepoType::Model,
        id.revision.clone(),
    ));
    let config = repo
        .get("config.json")
        .map_err(|e| err("config.json", &e))?;
    // optional: a model without a tokenizer.json still loads (the CLI then says so)
    let _ = repo.get("tokenizer.json");
    if repo.get("model.safetensors").is_err() {
        let index = repo
            .get("model.safetensors.index.json")
            .map_err(|e| err("model.safetensors(.index.json)", &e))?;
        let text = std::fs::read_to_string(&index).map_err(|e| err("index", &e))?;
        let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| err("index", &e))?;
        let mut shards: Vec<&str> = json
            .get("weight_map")
            .and_then(|m| m.as_object())
            .map(|m| m.values().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        shards.sort_unstable();
        shards.dedup();
        for s in shards {
            repo.get(s).map_err(|e| err(s, &e))?;
        }
    }
    Ok(config
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(".")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_and_local_paths_win() {
        assert_eq!(
            HubId::parse("microsoft/deberta-v3-base"),
            Some(HubId {
                repo: "microsoft/deberta-v3-base".into(),
                revision: "main".into()
            })
        );
        assert_eq!(HubId::parse("gpt2-medium@v1.0").map(|h| h.repo), None);
        assert_eq!(
            HubId::parse("openai-community/gpt2-medium@6dcaa7a").map(|h| h.revision),
            Some("6dcaa7a".into())
        );
        assert_eq!(HubId::parse("a/b/c"), None);
        assert_eq!(HubId::parse("org/name@"), None);
        // an existing local directory resolves to itself, whatever it looks like
        let here = env!("CARGO_MANIFEST_DIR");
        assert_eq!(resolve(here).unwrap(), PathBuf::from(here));
        let err = resolve("/no/such/model.gguf").unwrap_err().to_string();
        assert!(err.contains("/no/such/model.gguf"), "{err}");
    }
}
