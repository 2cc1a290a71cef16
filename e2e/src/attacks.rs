//! What an attacker on the network can present to a sidecar: certificates
//! made the ways the attack scenarios describe. Each is a real
//! certificate and key (PEM) that completes a TLS handshake; it is the Mazu
//! filter that must refuse it.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, anyhow, bail};
use base64ct::{Base64UrlUnpadded, Encoding};
use der::asn1::{BitString, Ia5String, OctetString};
use der::{Decode, Encode};
use mazu_dev_issuer::{Algorithm, DevIssuer};
use mazu_testkit::fixtures::{WorkloadSpec, unix_now};
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::DecodePrivateKey as _;
use x509_cert::Certificate;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::ext::pkix::name::GeneralName;

use crate::mesh::{LocalMesh, ServiceSpec};

/// A certificate and its private key, both PEM.
#[derive(Clone, Debug)]
pub struct Credential {
    /// The certificate.
    pub cert_pem: String,
    /// The PKCS#8 private key.
    pub key_pem: String,
}

impl Credential {
    /// As `(certificate, key)` for a TLS client.
    pub fn as_pair(&self) -> (&str, &str) {
        (&self.cert_pem, &self.key_pem)
    }

    /// As an owned `(certificate, key)`.
    pub fn into_pair(self) -> (String, String) {
        (self.cert_pem, self.key_pem)
    }
}

fn spec_of(service: &ServiceSpec) -> WorkloadSpec {
    WorkloadSpec::new(&service.namespace, &service.name)
}

/// A certificate for `service`'s SPIFFE ID signed by a conventional mesh CA
/// (as a compromised istiod would issue): valid X.509, no Mazu token.
pub fn mesh_ca_signed(dir: &Path, service: &ServiceSpec) -> Result<Credential> {
    let dir = tempfile::tempdir_in(dir)?;
    let path = |name: &str| dir.path().join(name);
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/O=cluster.local/CN=istio-ca",
        "-keyout",
        &path("ca.key").display().to_string(),
        "-out",
        &path("ca.crt").display().to_string(),
    ])?;
    openssl(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-subj",
        "/O=cluster.local",
        "-keyout",
        &path("leaf.key").display().to_string(),
        "-out",
        &path("leaf.csr").display().to_string(),
    ])?;
    std::fs::write(
        path("ext.cnf"),
        format!(
            "subjectAltName=URI:{}\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=critical,digitalSignature\n",
            service.spiffe_id()
        ),
    )?;
    openssl(&[
        "x509",
        "-req",
        "-days",
        "1",
        "-in",
        &path("leaf.csr").display().to_string(),
        "-CA",
        &path("ca.crt").display().to_string(),
        "-CAkey",
        &path("ca.key").display().to_string(),
        "-CAcreateserial",
        "-extfile",
        &path("ext.cnf").display().to_string(),
        "-out",
        &path("leaf.crt").display().to_string(),
    ])?;
    // Present the chain, as an Istio workload does.
    let chain =
        std::fs::read_to_string(path("leaf.crt"))? + &std::fs::read_to_string(path("ca.crt"))?;
    Ok(Credential {
        cert_pem: chain,
        key_pem: std::fs::read_to_string(path("leaf.key"))?,
    })
}

fn openssl(args: &[&str]) -> Result<()> {
    let output = Command::new("openssl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("cannot run openssl")?;
    if !output.status.success() {
        bail!(
            "openssl {}: {}",
            args.first().copied().unwrap_or_default(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

fn credential_of(workload: mazu_testkit::fixtures::Workload) -> Credential {
    Credential {
        cert_pem: workload.cert_pem,
        key_pem: workload.key_pem,
    }
}

/// `victim`'s current, registered token in a certificate for the attacker's
/// own TLS key (the token was stolen, the key was not).
pub fn stolen_token(mesh: &LocalMesh, victim: &str) -> Result<Credential> {
    let sidecar = mesh.service(victim)?;
    let token = sidecar.token()?;
    Ok(credential_of(
        mesh.tokens
            .workload_with_token(token, &spec_of(&sidecar.spec)),
    ))
}

/// A valid token for `service`, freshly minted by the real issuer, whose id
/// was never registered with the curator.
pub fn never_registered(mesh: &LocalMesh, service: &ServiceSpec) -> Result<Credential> {
    let token = mesh.mint_token(service)?;
    Ok(credential_of(
        mesh.tokens.workload_with_token(token, &spec_of(service)),
    ))
}

/// A token that expired two hours ago (in a certificate made while it was valid).
pub fn expired_token(mesh: &LocalMesh, service: &ServiceSpec) -> Credential {
    let mut spec = spec_of(service);
    spec.issued_at = unix_now() - 3 * 3600;
    spec.token_lifetime = 3600;
    spec.certificate_time = spec.issued_at + 60;
    credential_of(mesh.tokens.workload_from(&mesh.tokens.issuer, &spec))
}

/// A well-formed token for `service` signed by an issuer the mesh does not trust.
pub fn other_issuer(mesh: &LocalMesh, service: &ServiceSpec) -> Result<Credential> {
    let rogue = DevIssuer::generate(
        Algorithm::Es256,
        "https://rogue-cluster.example",
        &mut rand::rngs::OsRng,
    )
    .context("generating the rogue issuer")?;
    Ok(credential_of(
        mesh.tokens.workload_from(&rogue, &spec_of(service)),
    ))
}

/// A token from the real issuer for another audience (e.g. one meant for
/// the Kubernetes API server, lifted from a pod).
pub fn other_audience(mesh: &LocalMesh, service: &ServiceSpec) -> Credential {
    let mut spec = spec_of(service);
    spec.audiences = vec!["https://kubernetes.default.svc".to_owned()];
    credential_of(mesh.tokens.workload_from(&mesh.tokens.issuer, &spec))
}

/// `victim`'s token with its claims edited (expiry pushed a year out), the
/// signature left as it was.
pub fn tampered_token(mesh: &LocalMesh, victim: &str) -> Result<Credential> {
    let sidecar = mesh.service(victim)?;
    let token = sidecar.token()?;
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature)) = (parts.next(), parts.next(), parts.next())
    else {
        bail!("{victim}'s token is not a compact JWT");
    };
    let claims =
        Base64UrlUnpadded::decode_vec(payload).map_err(|e| anyhow!("token payload: {e}"))?;
    let mut claims: serde_json::Value = serde_json::from_slice(&claims)?;
    let exp = claims["exp"].as_u64().unwrap_or_else(unix_now);
    claims["exp"] = (exp + 365 * 24 * 3600).into();
    let edited = Base64UrlUnpadded::encode_string(&serde_json::to_vec(&claims)?);
    let forged = format!("{header}.{edited}.{signature}");
    Ok(credential_of(
        mesh.tokens
            .workload_with_token(forged, &spec_of(&sidecar.spec)),
    ))
}

/// `victim`'s real, registered certificate re-issued under its own
/// registered key with the URI SAN changed to `claimed`'s SPIFFE ID: the
/// token says one service account, the certificate claims another.
pub fn spiffe_id_mismatch(
    mesh: &LocalMesh,
    victim: &str,
    claimed: &ServiceSpec,
) -> Result<Credential> {
    let sidecar = mesh.service(victim)?;
    let (cert_pem, key_pem) = sidecar.served_identity()?;
    let key = SigningKey::from_pkcs8_pem(&key_pem).map_err(|e| anyhow!("agent key: {e}"))?;
    let (_, der) =
        der::pem::decode_vec(cert_pem.as_bytes()).map_err(|e| anyhow!("agent certificate: {e}"))?;
    let mut certificate = Certificate::from_der(&der)?;
    let san = SubjectAltName(vec![GeneralName::UniformResourceIdentifier(
        Ia5String::new(&claimed.spiffe_id())?,
    )]);
    let extensions = certificate
        .tbs_certificate
        .extensions
        .as_mut()
        .ok_or_else(|| anyhow!("the agent's certificate has no extensions"))?;
    let san_oid = <SubjectAltName as der::oid::AssociatedOid>::OID;
    let extension = extensions
        .iter_mut()
        .find(|e| e.extn_id == san_oid)
        .ok_or_else(|| anyhow!("the agent's certificate has no subjectAltName"))?;
    extension.extn_value = OctetString::new(san.to_der()?)?;
    let signature: Signature = key.sign(&certificate.tbs_certificate.to_der()?);
    certificate.signature = BitString::from_bytes(signature.to_der().as_bytes())?;
    let cert_pem = der::pem::encode_string(
        "CERTIFICATE",
        der::pem::LineEnding::LF,
        &certificate.to_der()?,
    )
    .map_err(|e| anyhow!("PEM: {e}"))?;
    Ok(Credential { cert_pem, key_pem })
}
