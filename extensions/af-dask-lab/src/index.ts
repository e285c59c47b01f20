// JupyterLab plugin: the Dask sidebar, dashboards in the main area, connect code into notebooks.
import { ILabShell, ILayoutRestorer, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { showErrorMessage } from '@jupyterlab/apputils';
import { INotebookTracker, NotebookActions } from '@jupyterlab/notebook';
import { LabIcon } from '@jupyterlab/ui-components';

import { ICluster } from './api';
import { DashboardTabs } from './dashboard';
import { examplesPlugin } from './examples';
import { earlyLauncherPlugin } from './launcher';
import { memoryStopPlugin } from './memory';
import { DaskPanel } from './panel';

const daskIcon = new LabIcon({
  name: 'af-dask-lab:dask',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><g class="jp-icon3" fill="#616161">' +
    '<rect x="3" y="3" width="5" height="18" rx="2"/><rect x="10" y="6" width="5" height="15" rx="2"/>' +
    '<rect x="17" y="10" width="4" height="11" rx="2"/></g></svg>'
});

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'af-dask-lab:plugin',
  description: 'Dask clusters on every backend of the analysis facility.',
  autoStart: true,
  requires: [ILabShell, INotebookTracker],
  optional: [ILayoutRestorer],
  activate: (app: JupyterFrontEnd, shell: ILabShell, notebooks: INotebookTracker, restorer: ILayoutRestorer | null) => {
    const dashboards = new DashboardTabs(shell, daskIcon);
    const openDashboard = (cluster: ICluster, label: string, url: string) => {
      if (!url) {
        void showErrorMessage('Dashboard not available', `Cluster ${cluster.display_name} is not running yet.`);
        return;
      }
      dashboards.open(cluster, label, url);
    };
    const insertCode = (cluster: ICluster) => {
      const current = notebooks.currentWidget;
      if (!current) {
        void showErrorMessage('No notebook', 'Open a notebook first: the connect code goes into the active notebook.');
        return;
      }
      const notebook = current.content;
      NotebookActions.insertBelow(notebook);
      notebook.activeCell?.model.sharedModel.setSource(cluster.connect_code);
      shell.activateById(current.id);
    };
    const panel = new DaskPanel(
      {
        openDashboard,
        insertCode,
        clustersListed: clusters => dashboards.keepOnly(clusters),
        clusterStopped: cluster => dashboards.stopped(cluster)
      },
      app.commands
    );
    panel.title.icon = daskIcon;
    shell.add(panel, 'left', { rank: 200 });
    if (restorer) {
      restorer.add(panel, 'af-dask-panel');
    }
    app.commands.addCommand('af-dask:open-panel', {
      label: 'Dask clusters',
      execute: () => shell.activateById(panel.id)
    });
  }
};

export default [plugin, examplesPlugin, earlyLauncherPlugin, memoryStopPlugin];
