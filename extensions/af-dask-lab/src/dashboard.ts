// Dashboard panes as JupyterLab tabs, as dask-labextension opens them: the whole dashboard or one
// of its individual plots (task stream, progress, worker memory, ...) in an IFrame main-area
// widget. When the cluster stops, each of its tabs says so in place of the dead plot.
import { ILabShell } from '@jupyterlab/application';
import { IFrame, MainAreaWidget } from '@jupyterlab/apputils';
import { LabIcon } from '@jupyterlab/ui-components';

import { ICluster } from './api';

/** The key of a cluster across backends. */
export function clusterKey(cluster: { backend: string; name: string }): string {
  return `${cluster.backend}/${cluster.name}`;
}

class DashboardTab extends MainAreaWidget<IFrame> {
  constructor(
    readonly key: string,
    url: string
  ) {
    // The bokeh server's scripts must run in the frame (dask-labextension does the same).
    super({ content: new IFrame({ sandbox: ['allow-scripts', 'allow-same-origin', 'allow-popups'] }) });
    this.content.url = url;
    this.addClass('af-dask-dashboard');
  }

  /** Replace the plot by a note: the cluster has stopped. */
  markStopped(clusterName: string): void {
    if (this.hasClass('af-dask-dashboard-stopped')) {
      return;
    }
    this.addClass('af-dask-dashboard-stopped');
    this.content.url = 'about:blank';
    const note = document.createElement('div');
    note.className = 'af-dask-dashboard-note';
    const text = document.createElement('p');
    text.textContent = `Cluster ${clusterName} has stopped, so this dashboard has nothing more to show.`;
    const close = document.createElement('button');
    close.className = 'jp-Button jp-mod-styled jp-mod-reject';
    close.textContent = 'Close this tab';
    close.onclick = () => this.close();
    note.append(text, close);
    this.content.node.append(note);
    this.title.label = `${this.title.label} (stopped)`;
  }
}

export class DashboardTabs {
  private tabs = new Set<DashboardTab>();

  constructor(
    private shell: ILabShell,
    private icon: LabIcon
  ) {}

  /** Open (or show again) a tab with `url`: the full dashboard or one plot of `cluster`'s. */
  open(cluster: ICluster, label: string, url: string): void {
    const id = `af-dask-${cluster.backend}-${cluster.name}-${label.toLowerCase().replace(/[^a-z0-9]+/g, '-')}`;
    const existing = [...this.tabs].find(t => t.id === id && !t.hasClass('af-dask-dashboard-stopped'));
    if (existing) {
      this.shell.activateById(existing.id);
      return;
    }
    const tab = new DashboardTab(clusterKey(cluster), url);
    tab.id = id;
    tab.title.label = `${label} · ${cluster.display_name}`;
    tab.title.caption = `Dask dashboard of cluster ${cluster.display_name} on ${cluster.backend_label}`;
    tab.title.icon = this.icon;
    tab.title.closable = true;
    tab.disposed.connect(() => this.tabs.delete(tab));
    this.tabs.add(tab);
    this.shell.add(tab, 'main', { mode: 'split-right' });
    this.shell.activateById(tab.id);
  }

  /** After a successful listing: every tab of a cluster not listed says it has stopped. */
  keepOnly(clusters: ICluster[]): void {
    const live = new Map(clusters.map(c => [clusterKey(c), c]));
    for (const tab of this.tabs) {
      if (!live.has(tab.key)) {
        tab.markStopped(tab.title.label.split(' · ').pop() ?? tab.key);
      }
    }
  }

  /** A cluster the user stopped from the panel: its tabs say so at once. */
  stopped(cluster: ICluster): void {
    for (const tab of this.tabs) {
      if (tab.key === clusterKey(cluster)) {
        tab.markStopped(cluster.display_name);
      }
    }
  }
}
