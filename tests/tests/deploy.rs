//! The files under deploy/ that no cluster here can run (Kubernetes) or that run the binaries
//! through a service manager (systemd, Slurm, Compose), checked against the binaries themselves:
//! every manifest parses, every `LRSWEEP_*` variable and `--flag` it sets is one the binary it
//! starts accepts (read from the binaries' own clap definitions), the ports agree from the
//! listen address to the probes, the Service and the workers' URL, and the images are the
//! Dockerfile's targets. deploy/slurm/test.sh and deploy/compose/test.sh run the rest for real.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use serde_yaml_ng::Value;

/// The flags and environment variables one binary accepts, its subcommands' included.
#[derive(Default)]
struct Accepts {
    flags: BTreeSet<String>,
    env: BTreeSet<String>,
}

impl Accepts {
    fn of(command: &clap::Command) -> Accepts {
        let mut accepts = Accepts::default();
        accepts.add(command);
        accepts
    }

    fn add(&mut self, command: &clap::Command) {
        for arg in command.get_arguments() {
            if let Some(long) = arg.get_long() {
                self.flags.insert(format!("--{long}"));
            }
            if let Some(env) = arg.get_env() {
                self.env.insert(env.to_string_lossy().into_owned());
            }
        }
        for sub in command.get_subcommands() {
            self.add(sub);
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Binary {
    Coordinator,
    Worker,
}

impl Binary {
    fn named(name: &str) -> Option<Binary> {
        match name {
            "lrsweep-coordinator" => Some(Binary::Coordinator),
            "lrsweep-worker" => Some(Binary::Worker),
            _ => None,
        }
    }

    fn accepts(self) -> Accepts {
        match self {
            Binary::Coordinator => Accepts::of(&lrsweep_coordinator::cli::Args::command()),
            Binary::Worker => Accepts::of(&lrsweep_worker::cli::Args::command()),
        }
    }

    /// Checks `--flag` and `--flag=value` words and `LRSWEEP_*` names against the binary.
    fn check(self, place: &str, flags: &[String], env: &[String]) {
        let accepts = self.accepts();
        for flag in flags.iter().filter(|f| f.starts_with("--")) {
            let name = flag.split('=').next().unwrap_or(flag);
            assert!(
                accepts.flags.contains(name),
                "{place}: {self:?} has no flag {name}"
            );
        }
        for name in env.iter().filter(|n| n.starts_with("LRSWEEP_")) {
            assert!(
                accepts.env.contains(name),
                "{place}: {self:?} reads no variable {name}"
            );
        }
    }
}

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every file under `dir` whose name ends with one of `suffixes`.
fn files(dir: &Path, suffixes: &[&str]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files(&path, suffixes));
        } else if suffixes.iter().any(|s| path.to_string_lossy().ends_with(s)) {
            found.push(path);
        }
    }
    found.sort();
    found
}

/// Every document of a YAML file.
fn yaml(path: &Path) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(&read(path))
        .map(|doc| {
            serde::Deserialize::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        })
        .collect()
}

fn str_of<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {v:?}"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| {
            s.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// `host:port` or `scheme://host:port` → (host, port).
fn host_port(addr: &str) -> (String, u16) {
    let rest = addr.split("://").last().unwrap_or(addr);
    let (host, port) = rest
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("{addr}: no port"));
    (
        host.to_string(),
        port.trim_end_matches('/')
            .parse()
            .unwrap_or_else(|_| panic!("{addr}: bad port")),
    )
}

/// A container of a Kubernetes workload, with what the checks need.
struct Container {
    place: String,
    kind: String,
    binary: Binary,
    pod: Value,
    spec: Value,
}

impl Container {
    fn env(&self, name: &str) -> Option<&Value> {
        self.spec["env"]
            .as_sequence()?
            .iter()
            .find(|e| e["name"] == name)
    }

    fn env_value(&self, name: &str) -> &str {
        let e = self
            .env(name)
            .unwrap_or_else(|| panic!("{}: no {name}", self.place));
        str_of(&e["value"], name)
    }
}

/// The containers of every Deployment, StatefulSet and Job under deploy/k8s, with their
/// images; a patch (no image) is skipped.
fn k8s_containers() -> Vec<Container> {
    let mut found = Vec::new();
    for path in files(&deploy_dir().join("k8s"), &[".yaml"]) {
        for doc in yaml(&path) {
            let kind = doc["kind"].as_str().unwrap_or_default().to_string();
            let pod = &doc["spec"]["template"]["spec"];
            let Some(containers) = pod["containers"].as_sequence() else {
                continue;
            };
            for c in containers {
                let Some(image) = c["image"].as_str() else {
                    continue;
                };
                let place = format!("{} ({kind})", path.display());
                let binary = Binary::named(image_name(image))
                    .unwrap_or_else(|| panic!("{place}: image {image} is not one of ours"));
                found.push(Container {
                    place,
                    kind: kind.clone(),
                    binary,
                    pod: pod.clone(),
                    spec: c.clone(),
                });
            }
        }
    }
    found
}

/// `registry/path/name:tag` → `name`.
fn image_name(image: &str) -> &str {
    let last = image.rsplit('/').next().unwrap_or(image);
    last.split(':').next().unwrap_or(last)
}

/// The Dockerfile's build targets, i.e. the images there are.
fn dockerfile_targets() -> BTreeSet<String> {
    read(&deploy_dir().join("docker/Dockerfile"))
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .filter_map(|l| l.split(" AS ").nth(1))
        .map(|t| t.trim().to_string())
        .collect()
}

#[test]
fn kubernetes_containers_set_only_what_the_binaries_accept() {
    let containers = k8s_containers();
    let kinds: BTreeSet<_> = containers.iter().map(|c| c.kind.as_str()).collect();
    assert_eq!(
        kinds,
        BTreeSet::from(["Deployment", "Job", "StatefulSet"]),
        "every workload found"
    );
    for c in &containers {
        let env: Vec<String> = c.spec["env"]
            .as_sequence()
            .into_iter()
            .flatten()
            .map(|e| str_of(&e["name"], "env name").to_string())
            .collect();
        let mut words = strings(&c.spec["args"]);
        words.extend(strings(&c.spec["command"]));
        c.binary.check(&c.place, &words, &env);
        // The token only ever comes from the Secret, the same one on both sides.
        let token = c
            .env("LRSWEEP_TOKEN")
            .unwrap_or_else(|| panic!("{}: no token", c.place));
        assert_eq!(
            token["valueFrom"]["secretKeyRef"]["name"], "lrsweep-token",
            "{}",
            c.place
        );
        assert_eq!(token["valueFrom"]["secretKeyRef"]["key"], "token");
        assert!(token.get("value").is_none(), "{}: token in clear", c.place);
        // The images run as the Dockerfile's numeric non-root user.
        assert_eq!(
            c.pod["securityContext"]["runAsNonRoot"], true,
            "{}",
            c.place
        );
        assert_eq!(c.pod["securityContext"]["runAsUser"], 10001, "{}", c.place);
    }
}

#[test]
fn kubernetes_ports_agree_from_listen_address_to_probes_service_and_workers() {
    let containers = k8s_containers();
    let coordinator = containers
        .iter()
        .find(|c| c.binary == Binary::Coordinator)
        .expect("a coordinator");
    let (_, listen) = host_port(coordinator.env_value("LRSWEEP_LISTEN"));
    let ports = coordinator.spec["ports"].as_sequence().expect("ports");
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0]["containerPort"], u64::from(listen));
    let port_name = str_of(&ports[0]["name"], "port name");
    for probe in ["readinessProbe", "livenessProbe"] {
        let grpc = &coordinator.spec[probe]["grpc"];
        assert_eq!(grpc["port"], u64::from(listen), "{probe}");
        let service = grpc["service"].as_str().unwrap_or("");
        assert!(
            ["", lrsweep_coordinator::health::COORDINATOR_SERVICE].contains(&service),
            "{probe} asks about {service}, which the coordinator does not report"
        );
    }

    let service = yaml(&deploy_dir().join("k8s/coordinator/service.yaml"))
        .into_iter()
        .find(|d| d["kind"] == "Service")
        .expect("a Service");
    let service_name = str_of(&service["metadata"]["name"], "Service name");
    let service_port = &service["spec"]["ports"][0];
    assert!(
        service_port["targetPort"] == port_name || service_port["targetPort"] == u64::from(listen)
    );
    let stateful = yaml(&deploy_dir().join("k8s/coordinator/statefulset.yaml")).remove(0);
    assert_eq!(
        stateful["spec"]["template"]["metadata"]["labels"], service["spec"]["selector"],
        "the Service selects the coordinator's pods"
    );
    assert_eq!(stateful["spec"]["serviceName"], service_name);

    for worker in containers.iter().filter(|c| c.binary == Binary::Worker) {
        let (host, port) = host_port(worker.env_value("LRSWEEP_COORDINATOR"));
        assert_eq!(host, service_name, "{}", worker.place);
        assert_eq!(service_port["port"], u64::from(port), "{}", worker.place);
    }
}

#[test]
fn the_coordinator_keeps_its_database_and_has_time_to_shut_down() {
    let stateful = yaml(&deploy_dir().join("k8s/coordinator/statefulset.yaml")).remove(0);
    assert_eq!(stateful["spec"]["replicas"], 1, "one coordinator per sweep");
    let pod = &stateful["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    // Draining the workers, stopping the server: each bounded by DRAIN_TIMEOUT; then the report.
    let grace = pod["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("grace");
    let drain = lrsweep_coordinator::server::DRAIN_TIMEOUT.as_secs();
    assert!(
        grace >= 3 * drain,
        "{grace} s for a shutdown of up to {} s",
        2 * drain
    );
    let db = container["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "LRSWEEP_DB")
        .map(|e| str_of(&e["value"], "LRSWEEP_DB").to_string())
        .expect("LRSWEEP_DB");
    let claim = str_of(
        &stateful["spec"]["volumeClaimTemplates"][0]["metadata"]["name"],
        "claim",
    );
    let mount = container["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|m| m["name"] == claim)
        .expect("the claim is mounted");
    assert!(
        db.starts_with(&format!("{}/", str_of(&mount["mountPath"], "mountPath"))),
        "the database {db} is on the claim"
    );
}

#[test]
fn the_indexed_job_gives_up_and_ends() {
    let job = yaml(&deploy_dir().join("k8s/job/job.yaml")).remove(0);
    assert_eq!(job["spec"]["completionMode"], "Indexed");
    assert_eq!(
        job["spec"]["template"]["spec"]["restartPolicy"],
        "OnFailure"
    );
    let env = job["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_sequence()
        .unwrap();
    let give_up = env
        .iter()
        .find(|e| e["name"] == "LRSWEEP_GIVE_UP_AFTER")
        .expect("the Job's workers give up");
    lrsweep_worker::duration::parse(str_of(&give_up["value"], "give up")).unwrap();
}

#[test]
fn images_are_the_dockerfiles_targets_in_compose_and_kubernetes() {
    let targets = dockerfile_targets();
    for image in ["lrsweep-coordinator", "lrsweep-worker"] {
        let target = image.trim_start_matches("lrsweep-");
        assert!(
            targets.contains(target),
            "no `AS {target}` in the Dockerfile"
        );
    }
    let compose = yaml(&deploy_dir().join("compose/compose.yaml")).remove(0);
    for (name, service) in compose["services"].as_mapping().expect("services") {
        let name = str_of(name, "service");
        let image = str_of(&service["image"], "image");
        assert_eq!(image_name(image), format!("lrsweep-{name}"));
        assert_eq!(service["build"]["target"], name);
        assert_eq!(service["build"]["dockerfile"], "deploy/docker/Dockerfile");
    }
    for c in k8s_containers() {
        let image = str_of(&c.spec["image"], "image");
        let target = image_name(image).trim_start_matches("lrsweep-");
        assert!(targets.contains(target), "{}: {image}", c.place);
    }
}

#[test]
fn compose_sets_only_what_the_binaries_accept_and_its_ports_agree() {
    let dir = deploy_dir().join("compose");
    let compose = yaml(&dir.join("compose.yaml")).remove(0);
    let services = &compose["services"];
    let env = |service: &str| -> Vec<(String, String)> {
        services[service]["environment"]
            .as_mapping()
            .into_iter()
            .flatten()
            .map(|(k, v)| {
                (
                    str_of(k, "name").to_string(),
                    str_of(v, "value").to_string(),
                )
            })
            .collect()
    };
    for (service, binary) in [
        ("coordinator", Binary::Coordinator),
        ("worker", Binary::Worker),
    ] {
        let names: Vec<String> = env(service).into_iter().map(|(k, _)| k).collect();
        binary.check(&format!("compose {service}"), &[], &names);
    }
    let value = |service: &str, name: &str| {
        env(service)
            .into_iter()
            .find(|(k, _)| k == name)
            .unwrap_or_else(|| panic!("compose {service}: no {name}"))
            .1
    };
    let (_, listen) = host_port(&value("coordinator", "LRSWEEP_LISTEN"));
    let (host, port) = host_port(&value("worker", "LRSWEEP_COORDINATOR"));
    assert_eq!((host.as_str(), port), ("coordinator", listen));
    // The env file both services read: every variable in it (set or shown commented out).
    let example = read(&dir.join("lrsweep.env.example"));
    let names: Vec<String> = example
        .lines()
        .map(|l| l.trim_start_matches(['#', ' ']))
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.to_string()))
        .filter(|k| k.starts_with("LRSWEEP_"))
        .collect();
    assert!(names.contains(&"LRSWEEP_TOKEN".to_string()));
    let accepts_either = |n: &String| {
        Binary::Coordinator.accepts().env.contains(n) || Binary::Worker.accepts().env.contains(n)
    };
    for n in &names {
        assert!(
            accepts_either(n),
            "lrsweep.env.example: {n} is read by neither binary"
        );
    }
}

#[test]
fn kustomizations_name_files_that_exist() {
    let found = files(&deploy_dir().join("k8s"), &["kustomization.yaml"]);
    assert!(found.len() >= 4, "{found:?}");
    for path in found {
        let dir = path.parent().unwrap();
        let k = yaml(&path).remove(0);
        let mut named = strings(&k["resources"]);
        for generator in k["configMapGenerator"].as_sequence().into_iter().flatten() {
            named.extend(strings(&generator["files"]));
        }
        for p in k["patches"].as_sequence().into_iter().flatten() {
            named.push(str_of(&p["path"], "patch").to_string());
        }
        assert!(!named.is_empty(), "{}", path.display());
        for name in named {
            assert!(
                dir.join(&name).exists(),
                "{}: {name} missing",
                path.display()
            );
        }
    }
}

/// Joins backslash-continued shell lines.
fn logical_lines(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        match line.strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(line);
                lines.push(std::mem::take(&mut current));
            }
        }
    }
    lines
}

#[test]
fn systemd_units_and_the_sbatch_script_use_real_flags_and_variables() {
    let units = files(&deploy_dir().join("systemd"), &[".service"]);
    assert_eq!(units.len(), 2);
    for unit in units {
        for line in logical_lines(&read(&unit)) {
            let Some(exec) = line.strip_prefix("ExecStart=") else {
                continue;
            };
            let words: Vec<String> = exec.split_whitespace().map(String::from).collect();
            let binary = Binary::named(words[0].rsplit('/').next().unwrap_or_default())
                .unwrap_or_else(|| panic!("{}: runs {}", unit.display(), words[0]));
            binary.check(&unit.display().to_string(), &words, &[]);
        }
    }

    let sbatch = deploy_dir().join("slurm/lrsweep.sbatch");
    let text = read(&sbatch);
    let mut ran = BTreeSet::new();
    for line in logical_lines(&text) {
        for (var, binary) in [
            ("\"$coordinator\"", Binary::Coordinator),
            ("\"$worker\"", Binary::Worker),
        ] {
            if let Some((_, rest)) = line.split_once(var) {
                let words: Vec<String> = rest.split_whitespace().map(String::from).collect();
                binary.check("lrsweep.sbatch", &words, &[]);
                ran.insert(var);
            }
        }
        // What the script exports, the workers (started by srun) read.
        if let Some(rest) = line.trim().strip_prefix("export ") {
            let name = rest.split('=').next().unwrap_or_default().to_string();
            Binary::Worker.check("lrsweep.sbatch", &[], &[name]);
        }
    }
    assert_eq!(ran.len(), 2, "the script starts both binaries");
    assert!(text.contains("LRSWEEP_GIVE_UP_AFTER"));
}
