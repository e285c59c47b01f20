// The sidebar: pick a backend and its options, start a cluster, and manage the clusters listed
// by every backend's dask-gateway (including clusters started from code or an earlier session).
import { Widget } from '@lumino/widgets';

import { AfDaskError, IBackend, IBackendError, ICluster, IOptionSpec, call } from './api';

export interface IPanelActions {
  openDashboard(cluster: ICluster): void;
  insertCode(cluster: ICluster): void;
}

const REFRESH_MS = 3000;

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Partial<HTMLElementTagNameMap[K]> & { dataset?: Record<string, string> } = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  const { dataset, ...rest } = props;
  Object.assign(node, rest);
  if (dataset) {
    Object.assign(node.dataset, dataset);
  }
  node.append(...children);
  return node;
}

export class DaskPanel extends Widget {
  private backends: IBackend[] = [];
  private clusters: ICluster[] = [];
  private messages: HTMLDivElement;
  private form: HTMLDivElement;
  private list: HTMLDivElement;
  private timer: number | undefined;
  private busy = false;

  constructor(private actions: IPanelActions) {
    super();
    this.id = 'af-dask-panel';
    this.addClass('af-dask-panel');
    this.title.caption = 'Dask clusters';
    this.messages = el('div', { className: 'af-dask-messages' });
    this.form = el('div', { className: 'af-dask-form' });
    this.list = el('div', { className: 'af-dask-clusters' });
    this.node.append(
      el('h2', {}, 'Dask clusters'),
      this.messages,
      el('h3', {}, 'New cluster'),
      this.form,
      el('h3', {}, 'Your clusters'),
      this.list
    );
  }

  protected onAfterAttach(): void {
    void this.loadBackends();
    void this.refresh();
    this.timer = window.setInterval(() => {
      if (this.isVisible && !this.busy) {
        void this.refresh();
      }
    }, REFRESH_MS);
  }

  protected onBeforeDetach(): void {
    window.clearInterval(this.timer);
  }

  private showError(error: unknown): void {
    const text = error instanceof AfDaskError ? error.message : String(error);
    const box = el('div', { className: 'af-dask-error', role: 'alert' }, text);
    const close = el('button', { title: 'Dismiss', onclick: () => box.remove() }, '×');
    box.prepend(close, ' ');
    this.messages.append(box);
  }

  private showWarning(text: string): void {
    this.messages.append(el('div', { className: 'af-dask-warning' }, text));
  }

  private async loadBackends(): Promise<void> {
    try {
      this.backends = (await call<{ backends: IBackend[] }>('backends')).backends;
    } catch (error) {
      this.showError(error);
      return;
    }
    this.renderForm();
  }

  async refresh(): Promise<void> {
    try {
      const reply = await call<{ clusters: ICluster[]; errors: IBackendError[] }>('clusters');
      this.clusters = reply.clusters;
      this.renderClusters(reply.errors);
    } catch (error) {
      this.list.replaceChildren(el('div', { className: 'af-dask-error' }, String((error as Error).message)));
    }
  }

  private renderForm(): void {
    if (!this.backends.length) {
      this.form.replaceChildren(el('p', {}, 'You may not start Dask clusters on any backend.'));
      return;
    }
    const select = el('select', { className: 'af-dask-backend', name: 'backend' });
    for (const b of this.backends) {
      select.append(el('option', { value: b.name }, `${b.label} (${b.kind_label})`));
    }
    const fields = el('div', { className: 'af-dask-fields' });
    const draw = () => this.renderFields(fields, this.backends.find(b => b.name === select.value)!);
    select.onchange = draw;
    this.form.replaceChildren(el('label', {}, 'Backend'), select, fields);
    draw();
  }

  private renderFields(fields: HTMLDivElement, backend: IBackend): void {
    const inputs: Record<string, HTMLInputElement | HTMLSelectElement> = {};
    const rows: Node[] = [el('p', { className: 'af-dask-hint' }, backend.description)];
    for (const option of backend.options) {
      rows.push(...this.optionField(option, inputs));
    }
    const w = backend.workers;
    const workers = el('input', { type: 'number', name: 'workers', min: `${w.min}`, max: `${w.max}`, value: `${w.default}` });
    const adaptive = el('input', { type: 'checkbox', name: 'adaptive' });
    const minimum = el('input', { type: 'number', name: 'minimum', min: `${w.min}`, max: `${w.max}`, value: `${w.min}` });
    const maximum = el('input', { type: 'number', name: 'maximum', min: `${w.min}`, max: `${w.max}`, value: `${w.max}` });
    const adaptiveRow = el('div', { className: 'af-dask-row' }, 'min', minimum, 'max', maximum);
    adaptiveRow.hidden = true;
    adaptive.onchange = () => {
      adaptiveRow.hidden = !adaptive.checked;
      workers.disabled = adaptive.checked;
    };
    const create = el('button', { className: 'af-dask-primary af-dask-create' }, `Create on ${backend.label}`);
    create.onclick = async () => {
      const options: Record<string, unknown> = {};
      for (const [field, input] of Object.entries(inputs)) {
        if (input instanceof HTMLInputElement && input.type === 'checkbox') {
          options[field] = input.checked;
        } else {
          options[field] = input instanceof HTMLInputElement && input.type === 'number' ? Number(input.value) : input.value;
        }
      }
      const body: Record<string, unknown> = { backend: backend.name, options };
      if (adaptive.checked) {
        body.adaptive = { minimum: Number(minimum.value), maximum: Number(maximum.value) };
      } else {
        body.workers = Number(workers.value);
      }
      create.disabled = true;
      create.textContent = 'Starting…';
      this.busy = true;
      try {
        await call<ICluster>('clusters', 'POST', body);
      } catch (error) {
        this.showError(error);
      } finally {
        this.busy = false;
        create.disabled = false;
        create.textContent = `Create on ${backend.label}`;
        await this.refresh();
      }
    };
    rows.push(
      el('label', {}, 'Workers'),
      workers,
      el('span', { className: 'af-dask-hint' }, ` ${w.min} to ${w.max}`),
      el('div', { className: 'af-dask-row' }, el('label', {}, adaptive, ' Adaptive (scale with the load)')),
      adaptiveRow,
      el('div', { className: 'af-dask-row' }, create)
    );
    fields.replaceChildren(...rows);
  }

  private optionField(option: IOptionSpec, inputs: Record<string, HTMLInputElement | HTMLSelectElement>): Node[] {
    const spec = option.spec;
    let input: HTMLInputElement | HTMLSelectElement;
    const hint: Node[] = [];
    if (spec.type === 'bool') {
      input = el('input', { type: 'checkbox', name: option.field, checked: option.default === true });
      inputs[option.field] = input;
      return [el('label', {}, input, ` ${option.label}`)];
    } else if (spec.type === 'select') {
      input = el('select', { name: option.field });
      for (const value of spec.options ?? []) {
        input.append(el('option', { value, selected: value === option.default }, value));
      }
    } else {
      input = el('input', { type: spec.type === 'int' || spec.type === 'float' ? 'number' : 'text', name: option.field, value: `${option.default}` });
      if (spec.min !== undefined && spec.min !== null) {
        input.min = `${spec.min}`;
      }
      if (spec.max !== undefined && spec.max !== null) {
        input.max = `${spec.max}`;
        hint.push(el('span', { className: 'af-dask-hint' }, ` ${spec.min ?? 0} to ${spec.max}`));
      }
    }
    inputs[option.field] = input;
    return [el('label', {}, option.label), input, ...hint];
  }

  private renderClusters(errors: IBackendError[]): void {
    const nodes: Node[] = errors.map(e => el('div', { className: 'af-dask-error' }, `${e.backend}: ${e.status}: ${e.message}`));
    if (!this.clusters.length) {
      nodes.push(el('p', { className: 'af-dask-hint af-dask-empty' }, 'No running clusters.'));
    }
    for (const cluster of this.clusters) {
      nodes.push(this.clusterCard(cluster));
    }
    this.list.replaceChildren(...nodes);
  }

  private backendLabel(name: string): string {
    return this.backends.find(b => b.name === name)?.label ?? name;
  }

  private clusterCard(cluster: ICluster): HTMLElement {
    const backend = this.backends.find(b => b.name === cluster.backend);
    const workers = cluster.workers === null ? 'starting…' : `${cluster.workers} worker${cluster.workers === 1 ? '' : 's'}, ${cluster.cores} cores`;
    const scaleTo = el('input', { type: 'number', min: `${backend?.workers.min ?? 0}`, max: `${backend?.workers.max ?? ''}`, value: `${cluster.workers ?? 0}` });
    const button = (label: string, cls: string, action: () => Promise<void> | void) => {
      const b = el('button', { className: cls }, label);
      b.onclick = async () => {
        b.disabled = true;
        this.busy = true;
        try {
          await action();
        } catch (error) {
          this.showError(error);
        } finally {
          this.busy = false;
          b.disabled = false;
          await this.refresh();
        }
      };
      return b;
    };
    const path = `clusters/${encodeURIComponent(cluster.backend)}/${encodeURIComponent(cluster.name)}`;
    const patch = async (body: unknown) => {
      const reply = await call<ICluster>(path, 'PATCH', body);
      if (reply.warning) {
        this.showWarning(reply.warning);
      }
    };
    const card = el(
      'div',
      { className: 'af-dask-cluster', dataset: { name: cluster.name, backend: cluster.backend } },
      el('div', { className: 'af-dask-title' }, `${this.backendLabel(cluster.backend)} · ${cluster.name.slice(0, 12)}`),
      el('div', {}, el('span', { className: `af-dask-status-${cluster.status}` }, cluster.status), ' · ', el('span', { className: 'af-dask-workers' }, workers)),
      el(
        'div',
        { className: 'af-dask-row' },
        scaleTo,
        button('Scale', 'af-dask-scale', () => patch({ workers: Number(scaleTo.value) })),
        button('Adaptive', 'af-dask-adapt', () => patch({ adaptive: { minimum: backend?.workers.min ?? 0, maximum: backend?.workers.max ?? 1 } }))
      ),
      el(
        'div',
        { className: 'af-dask-row' },
        button('Dashboard', 'af-dask-dashboard-button', () => this.actions.openDashboard(cluster)),
        button('Insert code', 'af-dask-insert', () => this.actions.insertCode(cluster)),
        button('Stop', 'af-dask-stop', () => call(path, 'DELETE').then(() => undefined))
      )
    );
    return card;
  }
}
