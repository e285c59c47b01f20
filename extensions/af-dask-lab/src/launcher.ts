// The launcher as soon as JupyterLab's layout is restored, not after its URL routing.
//
// JupyterLab opens the launcher of an empty main area when its router has routed the page's URL
// (the file browser's restore, on IRouter.routed). Routing first runs the state database's
// "load state" command, which waits for its debounced workspace save (500 ms after the last
// change of state, restarted by each change the layout's restore makes, then a PUT). Measured in
// Chromium on the facility host: 0.7-1.0 s with nothing to do between the layout restored and
// the launcher shown, of about 2.5 s from JupyterLab's page to its launcher.
// For a page opened at plain /lab (as the hub opens it) whose restored workspace left the main area
// empty, this opens the launcher at once; JupyterLab's own then finds the area taken. Pages opened
// at a file (/lab/tree/...), a named workspace or with ?reset or ?clone are left to JupyterLab.
import { ILabShell, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { PageConfig } from '@jupyterlab/coreutils';

const LAUNCHER_CREATE = 'launcher:create';

export function opensAtPlainLab(pathname: string, search: string, treePath: string): boolean {
  const query = new URLSearchParams(search);
  return /\/lab\/?$/.test(pathname) && !treePath && !query.has('reset') && !query.has('clone');
}

export const earlyLauncherPlugin: JupyterFrontEndPlugin<void> = {
  id: 'af-dask-lab:early-launcher',
  description: 'Opens the launcher as soon as the layout is restored, before URL routing ends.',
  autoStart: true,
  optional: [ILabShell],
  activate: (app: JupyterFrontEnd, labShell: ILabShell | null) => {
    if (!labShell) {
      return;
    }
    const { pathname, search } = window.location;
    if (!opensAtPlainLab(pathname, search, PageConfig.getOption('treePath'))) {
      return;
    }
    void app.restored.then(() => {
      if (labShell.isEmpty('main') && app.commands.hasCommand(LAUNCHER_CREATE)) {
        void app.commands.execute(LAUNCHER_CREATE);
      }
    });
  }
};
