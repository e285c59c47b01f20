// The sidebar, built like JupyterLab's own (a SidePanel with sections, styled controls, theme
// variables): pick a backend and its options, start a named cluster, and manage the clusters listed
// by every backend's dask-gateway (including clusters started from code or an earlier session).
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { SidePanel, Switch, ToolbarButton, refreshIcon } from '@jupyterlab/ui-components';
import { Menu, Widget } from '@lumino/widgets';

import { AfDaskError, IBackend, IBackendError, ICluster, IOptionSpec, IPlot, ServerGoneError, call } from './api';
import { clusterKey } from './dashboard';

export interface IPanelActions {
  openDashboard(cluster: ICluster, label: string, url: string): void;
  insertCode(cluster: ICluster): void;
  clustersListed(clusters: ICluster[]): void;
  clusterStopped(cluster: ICluster): void;
}

const OPEN_PLOT = 'af-dask:open-plot';
const REFRESH_MS = 3000;
const GONE_REFRESH_MS = 15000;

type Kind = 'info' | 'warning' | 'error';

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

function button(label: string, className: string, title = ''): HTMLButtonElement {
  return el('button', { className: `jp-Button jp-mod-styled ${className}`, title, type: 'button' }, label);
}

/** "1 core", "2 cores": counts in words a person reads. */
export function plural(count: number, word: string): string {
  return `${count} ${word}${count === 1 ? '' : 's'}`;
}

/** The backend's name once: "This machine", or "Tier-2 site (HTCondor)" when the kind adds something. */
export function backendTitle(backend: IBackend): string {
  const kind = backend.kind_label.trim();
  return !kind || kind.toLowerCase() === backend.label.trim().toLowerCase() ? backend.label : `${backend.label} (${kind})`;
}

function age(startMs: number | null): string {
  if (!startMs) {
    return '—';
  }
  const minutes = Math.max(0, Math.floor((Date.now() - startMs) / 60000));
  if (minutes < 1) {
    return 'under a minute';
  }
  if (minutes < 60) {
    return plural(minutes, 'minute');
  }
  const hours = Math.floor(minutes / 60);
  return `${plural(hours, 'hour')} ${plural(minutes % 60, 'minute')}`;
}

/** One number field with its limits, checked in the browser before anything is sent. */
class NumberField {
  readonly input: HTMLInputElement;
  readonly row: HTMLDivElement;

  constructor(
    readonly field: string,
    readonly label: string,
    readonly min: number,
    readonly max: number,
    value: number,
    private unit: (n: number) => string,
    onInput: () => void
  ) {
    const id = `af-dask-field-${field}`;
    this.input = el('input', {
      className: 'jp-mod-styled',
      type: 'number',
      name: field,
      id,
      min: `${min}`,
      max: `${max}`,
      step: '1',
      value: `${value}`
    });
    this.input.oninput = onInput;
    this.row = el(
      'div',
      { className: 'af-dask-field' },
      el('label', { htmlFor: id }, label),
      this.input,
      el('span', { className: 'af-dask-hint' }, `${unit(min)} to ${unit(max)}`)
    );
  }

  get value(): number {
    return Number(this.input.value);
  }

  /** A sentence saying what is wrong with the value, or null. */
  problem(where: string): string | null {
    const raw = this.input.value.trim();
    const value = Number(raw);
    let said: string | null = null;
    if (raw === '' || !Number.isInteger(value)) {
      said = `${this.label} must be a whole number.`;
    } else if (value > this.max) {
      said = `${this.label} can be at most ${this.unit(this.max)} on ${where}.`;
    } else if (value < this.min) {
      said = `${this.label} must be at least ${this.unit(this.min)} on ${where}.`;
    }
    this.input.setAttribute('aria-invalid', said ? 'true' : 'false');
    this.row.classList.toggle('af-dask-invalid', said !== null);
    return said;
  }
}

const UNITS: Record<string, (n: number) => string> = {
  worker_memory_gb: n => `${n} GB`,
  worker_cores: n => plural(n, 'core'),
  worker_gpus: n => plural(n, 'GPU')
};

export class DaskPanel extends SidePanel {
  private backends: IBackend[] = [];
  private clusters: ICluster[] = [];
  private message: HTMLDivElement;
  private form = new Widget();
  private list = new Widget();
  private timer: number | undefined;
  private busy = false;
  private gone = false;
  private lastRefresh = 0;

  constructor(
    private actions: IPanelActions,
    private commands: Menu.IOptions['commands']
  ) {
    super();
    this.id = 'af-dask-panel';
    this.addClass('af-dask-panel');
    this.title.caption = 'Dask clusters';
    const header = new Widget();
    header.addClass('af-dask-header');
    this.message = el('div', { className: 'af-dask-message', role: 'status' });
    this.message.hidden = true;
    header.node.append(el('h2', { className: 'af-dask-heading' }, 'Dask clusters'), this.message);
    this.header.addWidget(header);

    this.form.addClass('af-dask-form');
    this.form.title.label = 'New cluster';
    this.list.addClass('af-dask-clusters');
    this.list.title.label = 'Your clusters';
    this.addWidget(this.form);
    this.addWidget(this.list);
    this.toolbar.addItem(
      'refresh',
      new ToolbarButton({ icon: refreshIcon, tooltip: 'Refresh the list of clusters', onClick: () => void this.refresh() })
    );
    this.commands.addCommand(OPEN_PLOT, {
      label: args => String(args.label),
      execute: args => {
        const cluster = this.clusters.find(c => clusterKey(c) === args.key);
        if (cluster) {
          this.actions.openDashboard(cluster, String(args.label), String(args.url));
        }
      }
    });
  }

  protected onAfterAttach(): void {
    void this.loadBackends();
    void this.refresh();
    this.timer = window.setInterval(() => {
      const wait = this.gone ? GONE_REFRESH_MS : REFRESH_MS;
      if (this.isVisible && !this.busy && Date.now() - this.lastRefresh >= wait) {
        void this.refresh();
      }
    }, REFRESH_MS);
  }

  protected onBeforeDetach(): void {
    window.clearInterval(this.timer);
  }

  /** The one current message: replaces the one before. */
  private say(text: string, kind: Kind): void {
    this.message.className = `af-dask-message af-dask-message-${kind}`;
    const close = button('', 'af-dask-dismiss', 'Dismiss');
    close.textContent = '×';
    close.setAttribute('aria-label', 'Dismiss');
    close.onclick = () => this.clear();
    this.message.replaceChildren(el('span', { className: 'af-dask-message-text' }, text), close);
    this.message.hidden = false;
  }

  private clear(): void {
    this.message.hidden = true;
    this.message.replaceChildren();
  }

  private sayError(error: unknown): void {
    if (error instanceof ServerGoneError) {
      // Nothing is broken that the user did: said calmly, not as an error.
      this.gone = true;
      this.say(error.message, 'info');
      return;
    }
    this.say(error instanceof AfDaskError ? error.message : `Something went wrong: ${String(error)}`, 'error');
  }

  private async loadBackends(): Promise<void> {
    try {
      this.backends = (await call<{ backends: IBackend[] }>('backends')).backends;
    } catch (error) {
      this.sayError(error);
      return;
    }
    this.renderForm();
  }

  async refresh(): Promise<void> {
    this.lastRefresh = Date.now();
    try {
      const reply = await call<{ clusters: ICluster[]; errors: IBackendError[] }>('clusters');
      if (this.gone) {
        this.gone = false;
        this.say('Your notebook server answers again.', 'info');
        if (!this.backends.length) {
          void this.loadBackends();
        }
      }
      this.clusters = reply.clusters;
      this.renderClusters(reply.errors);
      this.actions.clustersListed(this.clusters);
    } catch (error) {
      this.sayError(error);
    }
  }

  private renderForm(): void {
    const node = this.form.node;
    if (!this.backends.length) {
      node.replaceChildren(el('p', { className: 'af-dask-hint' }, 'You may not start Dask clusters on any backend.'));
      return;
    }
    const select = el('select', { className: 'jp-mod-styled af-dask-backend', name: 'backend', id: 'af-dask-backend' });
    for (const b of this.backends) {
      select.append(el('option', { value: b.name }, backendTitle(b)));
    }
    const fields = el('div', { className: 'af-dask-fields' });
    const draw = () => this.renderFields(fields, this.backends.find(b => b.name === select.value)!);
    select.onchange = () => {
      this.clear();
      draw();
    };
    node.replaceChildren(
      el('div', { className: 'af-dask-field' }, el('label', { htmlFor: 'af-dask-backend' }, 'Backend'), select),
      fields
    );
    draw();
  }

  private renderFields(fields: HTMLDivElement, backend: IBackend): void {
    const where = backend.label;
    const numbers: NumberField[] = [];
    const others: Record<string, HTMLInputElement | HTMLSelectElement> = {};
    const check = (): string | null => {
      let first: string | null = null;
      for (const field of numbers) {
        if (field.row.hidden) {
          field.problem(where); // clears a stale mark
          continue;
        }
        const said = field.problem(where);
        first = first ?? said;
      }
      if (!first && adaptive.value && minimum.value > maximum.value) {
        first = `The adaptive minimum (${minimum.value}) is above the maximum (${maximum.value}).`;
      }
      const name = others.cluster_name;
      if (!first && name && name.value.trim() && !/^[A-Za-z0-9][A-Za-z0-9 ._-]*$/.test(name.value.trim())) {
        first = "A cluster name may hold letters, digits, spaces, '-', '_' and '.', starting with a letter or digit.";
      }
      create.disabled = first !== null;
      if (first) {
        this.say(first, 'warning');
      } else if (this.message.classList.contains('af-dask-message-warning')) {
        this.clear();
      }
      return first;
    };
    const rows: Node[] = [el('p', { className: 'af-dask-hint af-dask-about' }, backend.description)];
    for (const option of backend.options) {
      const spec = option.spec;
      if (spec.type === 'int' && spec.min !== undefined && spec.max !== undefined) {
        const unit = UNITS[option.field] ?? ((n: number) => `${n}`);
        const field = new NumberField(option.field, option.label.replace(/ \(GB\)$/, ''), spec.min, spec.max, Number(option.default), unit, check);
        numbers.push(field);
        rows.push(field.row);
      } else {
        rows.push(this.otherField(option, others, check));
      }
    }
    const w = backend.workers;
    const workers = new NumberField('workers', 'Workers', w.min, w.max, w.default, n => `${n}`, check);
    const minimum = new NumberField('minimum', 'Fewest workers', w.min, w.max, w.min, n => `${n}`, check);
    const maximum = new NumberField('maximum', 'Most workers', w.min, w.max, w.max, n => `${n}`, check);
    numbers.push(workers, minimum, maximum);
    const adaptive = new Switch();
    adaptive.label = 'Adaptive: scale with the load';
    adaptive.addClass('af-dask-adaptive');
    adaptive.caption = 'Dask adds and removes workers between the fewest and the most as the work needs them';
    const showAdaptive = () => {
      workers.row.hidden = adaptive.value;
      minimum.row.hidden = maximum.row.hidden = !adaptive.value;
      check();
    };
    adaptive.valueChanged.connect(showAdaptive);
    const switchHolder = el('div', { className: 'af-dask-field' });
    const create = button(`Create on ${where}`, 'jp-mod-accept af-dask-create');
    create.onclick = async () => {
      if (check()) {
        return;
      }
      const options: Record<string, unknown> = {};
      for (const field of numbers) {
        if (!['workers', 'minimum', 'maximum'].includes(field.field)) {
          options[field.field] = field.value;
        }
      }
      for (const [field, input] of Object.entries(others)) {
        options[field] = input instanceof HTMLInputElement && input.type === 'checkbox' ? input.checked : input.value.trim();
      }
      const body: Record<string, unknown> = { backend: backend.name, options };
      if (adaptive.value) {
        body.adaptive = { minimum: minimum.value, maximum: maximum.value };
      } else {
        body.workers = workers.value;
      }
      create.disabled = true;
      create.textContent = 'Starting…';
      this.busy = true;
      this.say(`Starting a cluster on ${where}…`, 'info');
      try {
        const cluster = await call<ICluster>('clusters', 'POST', body);
        this.say(`Cluster ${cluster.display_name} runs on ${where}.`, 'info');
        if (others.cluster_name) {
          others.cluster_name.value = '';
        }
      } catch (error) {
        this.sayError(error);
      } finally {
        this.busy = false;
        create.disabled = false;
        create.textContent = `Create on ${where}`;
        await this.refresh();
      }
    };
    rows.push(workers.row, switchHolder, minimum.row, maximum.row);
    rows.push(
      el('p', { className: 'af-dask-hint' }, `Clusters stop after ${plural(backend.idle_timeout_minutes, 'minute')} without work.`),
      el('div', { className: 'af-dask-actions' }, create)
    );
    fields.replaceChildren(...rows);
    // The Switch is a Lumino widget: attach it where its row is.
    Widget.attach(adaptive, switchHolder);
    showAdaptive();
  }

  private otherField(option: IOptionSpec, inputs: Record<string, HTMLInputElement | HTMLSelectElement>, check: () => void): Node {
    const spec = option.spec;
    const id = `af-dask-field-${option.field}`;
    if (spec.type === 'bool') {
      const input = el('input', { type: 'checkbox', name: option.field, id, checked: option.default === true });
      inputs[option.field] = input;
      return el('div', { className: 'af-dask-field af-dask-check' }, input, el('label', { htmlFor: id }, option.label));
    }
    let input: HTMLInputElement | HTMLSelectElement;
    const hint: Node[] = [];
    if (spec.type === 'select') {
      input = el('select', { className: 'jp-mod-styled', name: option.field, id });
      for (const value of spec.options ?? []) {
        input.append(el('option', { value, selected: value === option.default }, value));
      }
    } else {
      input = el('input', { className: 'jp-mod-styled', type: 'text', name: option.field, id, value: `${option.default}` });
      if (option.field === 'cluster_name') {
        input.placeholder = 'optional, e.g. ttbar-fit';
        input.title = 'Empty: the cluster gets two readable words as its name';
        input.maxLength = spec.max_length ?? 40; // backends.common.cluster_names.MAX_LENGTH
      }
      input.oninput = () => check();
    }
    inputs[option.field] = input;
    return el('div', { className: 'af-dask-field' }, el('label', { htmlFor: id }, option.label), input, ...hint);
  }

  private renderClusters(errors: IBackendError[]): void {
    // Someone typing a worker count: redraw at the next refresh, not under their cursor.
    const focused = document.activeElement;
    if (focused instanceof HTMLInputElement && this.list.node.contains(focused)) {
      return;
    }
    const nodes: Node[] = errors.map(e =>
      el('div', { className: 'af-dask-backend-down af-dask-message af-dask-message-warning' }, e.plain || e.message)
    );
    if (!this.clusters.length) {
      nodes.push(el('p', { className: 'af-dask-hint af-dask-empty' }, 'No running clusters.'));
    }
    for (const cluster of this.clusters) {
      nodes.push(this.clusterCard(cluster));
    }
    this.list.node.replaceChildren(...nodes);
  }

  private clusterCard(cluster: ICluster): HTMLElement {
    const backend = this.backends.find(b => b.name === cluster.backend);
    const path = `clusters/${encodeURIComponent(cluster.backend)}/${encodeURIComponent(cluster.name)}`;
    const act = (b: HTMLButtonElement, action: () => Promise<void> | void) => {
      b.onclick = async () => {
        b.disabled = true;
        this.busy = true;
        try {
          await action();
        } catch (error) {
          this.sayError(error);
        } finally {
          this.busy = false;
          b.disabled = false;
          await this.refresh();
        }
      };
      return b;
    };
    const size =
      cluster.workers === null
        ? 'starting…'
        : `${plural(cluster.workers, 'worker')}, ${plural(cluster.cores ?? 0, 'core')}`;
    const memory = cluster.worker_memory_gb === null ? '—' : `${cluster.worker_memory_gb} GB each`;
    const idle = cluster.idle_timeout_minutes === null ? '—' : `stops after ${plural(cluster.idle_timeout_minutes, 'minute')} idle`;
    const facts = el(
      'dl',
      { className: 'af-dask-facts' },
      el('dt', {}, 'Size'),
      el('dd', { className: 'af-dask-workers' }, size),
      el('dt', {}, 'Memory'),
      el('dd', { className: 'af-dask-memory' }, memory),
      el('dt', {}, 'Age'),
      el('dd', { className: 'af-dask-age' }, age(cluster.start_time)),
      el('dt', {}, 'Idle'),
      el('dd', { className: 'af-dask-idle' }, idle)
    );
    const w = backend?.workers ?? { min: 0, max: cluster.workers ?? 1 };
    const scaleTo = el('input', {
      className: 'jp-mod-styled af-dask-scale-to',
      type: 'number',
      min: `${w.min}`,
      max: `${w.max}`,
      value: `${cluster.workers ?? 0}`,
      title: `Workers: ${w.min} to ${w.max}`
    });
    const scale = act(button('Scale', 'af-dask-scale', `Scale to this many workers (${w.min} to ${w.max})`), async () => {
      const count = Number(scaleTo.value);
      if (!Number.isInteger(count) || count < w.min || count > w.max) {
        this.say(`Workers can be ${w.min} to ${w.max} on ${cluster.backend_label}.`, 'warning');
        return;
      }
      const reply = await call<ICluster>(`${path}`, 'PATCH', { workers: count });
      this.say(reply.warning || `Cluster ${cluster.display_name} scales to ${plural(count, 'worker')}.`, reply.warning ? 'warning' : 'info');
    });
    const adapt = act(button('Adaptive', 'af-dask-adapt', `Scale with the load, ${w.min} to ${w.max} workers`), async () => {
      await call<ICluster>(path, 'PATCH', { adaptive: { minimum: w.min, maximum: w.max } });
      this.say(`Cluster ${cluster.display_name} now scales with the load (${w.min} to ${w.max} workers).`, 'info');
    });
    const dashboard = button('Dashboard ▾', 'af-dask-dashboard-button', 'Open the dashboard or one of its plots in a tab');
    dashboard.disabled = !cluster.dashboard_link;
    dashboard.onclick = () => void this.openPlotsMenu(cluster, dashboard);
    const insert = button('Insert code', 'af-dask-insert', 'Insert code connecting a client to this cluster into the active notebook');
    insert.onclick = () => this.actions.insertCode(cluster);
    const stop = act(button('Stop', 'jp-mod-warn af-dask-stop', 'Stop this cluster and its workers'), async () => {
      const answer = await showDialog({
        title: `Stop cluster ${cluster.display_name}?`,
        body:
          `Its ${plural(cluster.workers ?? 0, 'worker')} on ${cluster.backend_label} stop, and results they hold in memory are lost. ` +
          'Notebooks connected to it lose their client.',
        buttons: [Dialog.cancelButton({ label: 'Keep running' }), Dialog.warnButton({ label: 'Stop cluster' })]
      });
      if (!answer.button.accept) {
        return;
      }
      await call(path, 'DELETE');
      this.actions.clusterStopped(cluster);
      this.say(`Cluster ${cluster.display_name} stopped.`, 'info');
    });
    return el(
      'div',
      { className: 'af-dask-cluster', dataset: { name: cluster.name, backend: cluster.backend } },
      el(
        'div',
        { className: 'af-dask-title', title: `Cluster id ${cluster.name}` },
        el('span', { className: 'af-dask-name' }, cluster.display_name),
        el('span', { className: `af-dask-status af-dask-status-${cluster.status}` }, cluster.status.toLowerCase())
      ),
      el('div', { className: 'af-dask-where' }, cluster.backend_label),
      facts,
      el('div', { className: 'af-dask-actions' }, scaleTo, scale, adapt),
      el('div', { className: 'af-dask-actions' }, dashboard, insert, stop)
    );
  }

  private async openPlotsMenu(cluster: ICluster, anchor: HTMLElement): Promise<void> {
    let plots: IPlot[] = [];
    try {
      plots = (await call<{ plots: IPlot[] }>(`clusters/${encodeURIComponent(cluster.backend)}/${encodeURIComponent(cluster.name)}/plots`)).plots;
    } catch (error) {
      this.sayError(error);
    }
    const menu = new Menu({ commands: this.commands });
    menu.addClass('af-dask-plots-menu');
    const key = clusterKey(cluster);
    menu.addItem({ command: OPEN_PLOT, args: { key, label: 'Dashboard', url: cluster.dashboard_link ?? '' } });
    if (plots.length) {
      menu.addItem({ type: 'separator' });
    }
    for (const plot of plots) {
      menu.addItem({ command: OPEN_PLOT, args: { key, label: plot.label, url: plot.url } });
    }
    const box = anchor.getBoundingClientRect();
    menu.open(box.left, box.bottom);
  }
}
