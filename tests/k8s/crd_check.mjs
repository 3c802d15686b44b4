// Checks custom resources the chart renders against their CRDs' own OpenAPI schemas, as
// the npm packages @kubernetes-models/keda and @kubernetes-models/prometheus-operator carry
// them (validators compiled from the CRDs, and one TypeScript interface per schema object).
// Types, enums and required fields come from the compiled validators; unknown fields are
// forbidden by walking the interfaces (kubectl --validate=strict would refuse them).
//
//   node crd_check.mjs MODELS_DIR < objects.json    → prints a JSON list of problems
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const models = process.argv[2];
const kinds = {
  "keda.sh/v1alpha1/ScaledObject": ["keda", "keda.sh/v1alpha1", "ScaledObject"],
  "keda.sh/v1alpha1/TriggerAuthentication": ["keda", "keda.sh/v1alpha1", "TriggerAuthentication"],
  "monitoring.coreos.com/v1/ServiceMonitor": ["prometheus-operator", "monitoring.coreos.com/v1", "ServiceMonitor"],
  "monitoring.coreos.com/v1/PrometheusRule": ["prometheus-operator", "monitoring.coreos.com/v1", "PrometheusRule"],
};

// interface name -> {prop: type text}, from every .d.ts of a package folder.
function interfaces(dir) {
  const out = {};
  const walk = (d) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith(".d.ts")) {
        const text = fs.readFileSync(p, "utf8");
        for (const m of text.matchAll(/export interface (I\w+)(?: extends [^{]+)? \{([\s\S]*?)\n\}/g)) {
          const props = {};
          for (const pm of m[2].matchAll(/^\s*"([^"]+)"\??: ([^;]+);/gm)) props[pm[1]] = pm[2].trim();
          out[m[1]] = props;
        }
        // Aliases: export type { IFoo as IComGithub...Foo }
        for (const a of text.matchAll(/(I\w+) as (I\w+)/g)) if (out[a[1]]) out[a[2]] = out[a[1]];
      }
    }
  };
  walk(dir);
  return out;
}

const known = {};
function strict(value, type, where, problems, table) {
  if (value === null || typeof value !== "object") return;
  const arr = type.match(/^Array<(.+)>$/);
  if (arr) {
    if (Array.isArray(value)) value.forEach((v, i) => strict(v, arr[1], `${where}[${i}]`, problems, table));
    return;
  }
  const name = type.match(/^(I\w+)$/)?.[1];
  const props = name && table[name];
  if (!props) return; // a map ({[key: string]: ...}) or a type from elsewhere: any keys
  for (const [k, v] of Object.entries(value)) {
    if (!(k in props)) problems.push(`${where}.${k}: unknown field (not in the CRD's schema)`);
    else strict(v, props[k], `${where}.${k}`, problems, table);
  }
}

const input = JSON.parse(fs.readFileSync(0, "utf8"));
const problems = [];
for (const obj of input) {
  const key = `${obj.apiVersion}/${obj.kind}`;
  const spec = kinds[key];
  if (!spec) { problems.push(`${key}: no CRD schema known here`); continue; }
  const [pkg, group, kind] = spec;
  const base = path.join(models, "node_modules", "@kubernetes-models", pkg);
  const mod = await import(pathToFileURL(path.join(base, group, `${kind}.js`)).href);
  const where = `${obj.kind}/${obj.metadata?.name}`;
  try {
    new mod[kind](obj).validate();
  } catch (e) {
    problems.push(`${where}: ${e.message}`);
  }
  known[pkg] ??= interfaces(base);
  const top = known[pkg][`I${kind}`];
  for (const [k, v] of Object.entries(obj)) {
    if (["apiVersion", "kind", "metadata"].includes(k)) continue;
    if (!top || !(k in top)) problems.push(`${where}.${k}: unknown field`);
    else strict(v, top[k], `${where}.${k}`, problems, known[pkg]);
  }
}
console.log(JSON.stringify(problems));
